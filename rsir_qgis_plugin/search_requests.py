"""From what the user drew or labelled to a search task's request (UI thread: these read the project's
layers): the raster under a drawn box, a SearchRequest for the box, and a FeedbackRequest for the
labels layer."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
)

from .core.params import SearchParams
from .layers import crs_for_engine, project_rasters, query_raster, raster_file_path
from .labels.convert import footprints
from .labels.files import labels_dir
from .tasks import FeedbackRequest, SearchRequest, log


def raster_under_box(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem,
                     project: QgsProject) -> tuple[QgsRasterLayer, QgsRectangle] | None:
    """The topmost file-based raster of the project holding the box's centre, and the box in its CRS."""
    return query_raster(box, box_crs, project_rasters(project), project.transformContext())


def box_request(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, layer: QgsRasterLayer,
                local_box: QgsRectangle, index_dir: Path, params: SearchParams,
                output_crs: QgsCoordinateReferenceSystem,
                context: QgsCoordinateTransformContext) -> SearchRequest:
    """A search with a box drawn in `box_crs` over the raster `layer` (where it is `local_box`)."""
    log(f"Query box {box.toString(2)} ({box_crs.authid() or 'custom CRS'}) = {local_box.toString(2)} "
        f"in the CRS of {layer.name()} ({layer.crs().authid() or 'custom CRS'})")
    return SearchRequest(
        index_dir=index_dir, raster_path=raster_file_path(layer), raster_name=layer.name(),
        box=(box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()),
        box_crs=crs_for_engine(box_crs), params=params, output_crs=output_crs, transform_context=context)


def feedback_request(layer: QgsVectorLayer, project: QgsProject, index_dir: Path, params: SearchParams,
                     output_crs: QgsCoordinateReferenceSystem) -> FeedbackRequest:
    """A search with every label of the labels layer `layer`, as it is now (with unsaved edits)."""
    return FeedbackRequest(
        index_dir=index_dir, labels=QgsVectorLayerFeatureSource(layer), labels_crs=layer.crs(),
        rasters=tuple(footprints(project_rasters(project))), params=params, output_crs=output_crs,
        transform_context=project.transformContext(), labels_dir=labels_dir(layer))
