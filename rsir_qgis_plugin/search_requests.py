"""What a search task is given and what it gives back: SearchRequest (a drawn box), FeedbackRequest (the
labels layer) and SearchOutcome, and the functions that make the requests from what the user drew or
labelled (UI thread: these read the project's layers), with the raster under a drawn box, and the
outcome made from a search result (in the task's worker thread)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
)

from .core.params import SearchParams
from .labels.convert import footprints
from .labels.files import labels_dir
from .layers import (
    HitFeatureFactory,
    crs_for_engine,
    hit_fields,
    project_rasters,
    query_fields,
    query_raster,
    raster_file_path,
)
from .thumbnail_pixels import read_thumbnails


@dataclass
class SearchOutcome:
    """A search result plus what the UI shows of it, prepared off the UI thread."""

    result: Any  # core.search.SearchResult
    raster_name: str
    crs: QgsCoordinateReferenceSystem  # of the features
    hit_features: list[QgsFeature]
    query_feature: QgsFeature | None
    thumbnails: dict[int, Any] = field(default_factory=dict)  # rank -> (h, w, 3) uint8 numpy array
    feedback: Any = None  # core.feedback.Feedback of a refined search; None for a box query
    notes: list[str] = field(default_factory=list)  # labels left out of a refined search, and why


@dataclass(frozen=True)
class SearchRequest:
    """Everything one box query needs; the box is in `box_crs` and the engine reprojects it."""

    index_dir: Path
    raster_path: str
    raster_name: str
    box: tuple[float, float, float, float]
    box_crs: str  # EPSG:n or WKT
    params: SearchParams
    output_crs: QgsCoordinateReferenceSystem
    transform_context: QgsCoordinateTransformContext
    thumbnails: bool = True


@dataclass(frozen=True)
class FeedbackRequest:
    """A refined search: the labels as a feature source (made from the labels layer on the UI thread,
    read here in the worker), their CRS, and where the project's rasters lie (for labels drawn
    without a raster)."""

    index_dir: Path
    labels: Any  # QgsVectorLayerFeatureSource of the labels layer, or anything with getFeatures()
    labels_crs: QgsCoordinateReferenceSystem
    rasters: tuple  # labels.convert.RasterFootprint, topmost first
    params: SearchParams
    output_crs: QgsCoordinateReferenceSystem
    transform_context: QgsCoordinateTransformContext
    thumbnails: bool = True
    labels_dir: Path | None = None  # folder of a labels GeoPackage: relative raster paths start there


def search_outcome(result, name: str, output_crs: QgsCoordinateReferenceSystem,
                   context: QgsCoordinateTransformContext, thumbnails: bool, is_cancelled: Callable[[], bool],
                   query_raster: str | None = None, **extra) -> SearchOutcome:
    """In the worker thread: a search result's hits (and query) as features in the map CRS, and thumbnails
    (QGIS value types only, no widget; the thumbnails stop when `is_cancelled()` turns true)."""
    factory = HitFeatureFactory(output_crs, context)
    fields = hit_fields()
    hits = [factory.hit_feature(hit, fields) for hit in result.hits]
    query = None
    if result.query_polygon:
        query = QgsFeature(query_fields())
        query.setGeometry(factory.geometry(result.query_polygon, result.query_crs_wkt))
        query.setAttributes([query_raster or result.query_raster])
    thumbs = read_thumbnails(result.hits, is_cancelled=is_cancelled) if thumbnails else {}
    return SearchOutcome(result, name, output_crs, hits, query, thumbs, **extra)


def raster_under_box(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem,
                     project: QgsProject) -> tuple[QgsRasterLayer, QgsRectangle] | None:
    """The topmost file-based raster of the project holding the box's centre, and the box in its CRS."""
    return query_raster(box, box_crs, project_rasters(project), project.transformContext())


def box_request(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, layer: QgsRasterLayer,
                local_box: QgsRectangle, index_dir: Path, params: SearchParams,
                output_crs: QgsCoordinateReferenceSystem,
                context: QgsCoordinateTransformContext) -> SearchRequest:
    """A search with a box drawn in `box_crs` over the raster `layer` (where it is `local_box`)."""
    from .tasks import log  # here, not at the top: tasks imports this module for the request types

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
