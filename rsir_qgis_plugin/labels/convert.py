"""Conversions of labels: hits and drawn boxes to label geometries and to the engine's LabelledBox,
label features to the engine's Feedback (in a task's worker thread: values only), and back."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsGeometry,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..layers import HitFeatureFactory, box_in_crs, crs_for_engine, raster_file_path
from .files import labels_dir
from .layer import LABEL_FIELD, RASTER_FIELD, attribute_text, label_fields, label_text

if TYPE_CHECKING:  # the engine is imported when labels become a query, not when QGIS loads the plugin
    from ..core.examples import Feedback, LabelledBox
    from ..core.label_records import LabelRecord, LabelsRead


# Hits and drawn boxes -> labels --------------------------------------------------------------

def hit_geometry(hit, layer_crs: QgsCoordinateReferenceSystem,
                 context: QgsCoordinateTransformContext) -> QgsGeometry:
    """A hit's tile (corners in its raster's CRS) as a polygon in the labels layer's CRS."""
    return HitFeatureFactory(layer_crs, context).geometry(hit.polygon, hit.crs_wkt)


def ring_geometry(ring, crs_wkt: str, layer_crs: QgsCoordinateReferenceSystem,
                  context: QgsCoordinateTransformContext) -> QgsGeometry:
    """Any ring in a raster's CRS (the query polygon of a search) in the labels layer's CRS."""
    return HitFeatureFactory(layer_crs, context).geometry(ring, crs_wkt)


def box_geometry(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem,
                 layer_crs: QgsCoordinateReferenceSystem,
                 context: QgsCoordinateTransformContext) -> QgsGeometry:
    """A box drawn on the map (in `box_crs`) as a polygon in the labels layer's CRS."""
    geometry = QgsGeometry.fromRect(box)
    if box_crs != layer_crs:
        geometry = geometry.densifyByCount(4)
        geometry.transform(QgsCoordinateTransform(box_crs, layer_crs, context))
    return geometry


def ring_bounds(ring: Iterable[tuple[float, float]]) -> tuple[float, float, float, float]:
    xs, ys = zip(*ring)
    return min(xs), min(ys), max(xs), max(ys)


def box_for_hit(hit, positive: bool) -> LabelledBox:
    """A hit as the engine's labelled box: its tile's bounds in its raster's CRS."""
    from ..core.examples import LabelledBox

    return LabelledBox(raster=str(hit.raster), bbox=ring_bounds(hit.polygon), crs=hit.crs_wkt or None,
                       positive=positive)


def box_for_drawn(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, raster: str,
                  positive: bool) -> LabelledBox:
    """A box drawn on the map as the engine's labelled box, in the map's CRS."""
    from ..core.examples import LabelledBox

    return LabelledBox(raster=raster, bbox=(box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()),
                       crs=crs_for_engine(box_crs), positive=positive)


# Labels -> Feedback ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RasterFootprint:
    """Where a raster layer lies (values only, so a worker thread can use it without the layer)."""

    path: str
    crs: QgsCoordinateReferenceSystem
    extent: QgsRectangle


def footprints(layers: Sequence) -> list[RasterFootprint]:
    """Footprints of raster layers (UI thread), topmost first; see layers.project_rasters."""
    return [RasterFootprint(raster_file_path(layer), layer.crs(), QgsRectangle(layer.extent()))
            for layer in layers if raster_file_path(layer)]


def raster_under(box: QgsRectangle, crs: QgsCoordinateReferenceSystem, rasters: Sequence[RasterFootprint],
                 context: QgsCoordinateTransformContext) -> str | None:
    """The first raster whose extent holds the box's centre (the rule of a drawn query box)."""
    for raster in rasters:
        try:
            local = box_in_crs(box, crs, raster.crs, context)
        except Exception:  # noqa: BLE001 - QgsCsException: outside the raster CRS's valid area
            continue
        if raster.extent.contains(local.center()):
            return raster.path
    return None


def feedback_from_features(features: Iterable[QgsFeature], crs: QgsCoordinateReferenceSystem,
                           rasters: Sequence[RasterFootprint] = (),
                           context: QgsCoordinateTransformContext | None = None,
                           base_dir: str | Path | None = None) -> LabelsRead:
    """Label features (geometries in `crs`) as the engine's Feedback, read by the rules the command line
    reads a labels file with (core.label_records.labelled_boxes): this only adapts QGIS features.

    What the project adds: a box whose raster is one of `rasters` goes to the engine in that raster's
    CRS, so a hit's tile drawn in a map CRS that turns it (a geographic map over a UTM raster) comes
    back as exactly that tile, not as the larger box around it; a feature without a raster gets the
    raster under it (as a drawn box would). A relative raster path starts at `base_dir` (the folder of
    the labels file).
    """
    from ..core.label_records import labelled_boxes

    context = context or QgsCoordinateTransformContext()
    by_path = {_real(r.path): r for r in rasters}

    def raster_crs(path: str) -> str | None:
        footprint = by_path.get(_real(path))
        return crs_for_engine(footprint.crs) if footprint is not None and footprint.crs.isValid() else None

    def under(ring) -> str | None:
        return raster_under(QgsRectangle(*ring_bounds(ring)), crs, rasters, context)

    records = (_record(feature) for feature in features)
    return labelled_boxes(records, crs_for_engine(crs) if crs.isValid() else "", raster_crs, base_dir, under)


def _record(feature: QgsFeature) -> LabelRecord:
    from ..core.label_records import LabelRecord

    return LabelRecord(fid=feature.id(), raster=attribute_text(feature[RASTER_FIELD]),
                       label=attribute_text(feature[LABEL_FIELD]), ring=_exterior_points(feature.geometry()))


def _exterior_points(geometry: QgsGeometry | None) -> list[tuple[float, float]] | None:
    """All exterior-ring points of a (multi)polygon, or None for no geometry or another kind (as
    core.ogr_files.exterior_points reads an OGR geometry)."""
    if geometry is None or geometry.isEmpty() \
            or geometry.type() != QgsWkbTypes.GeometryType.PolygonGeometry:
        return None
    polygons = geometry.asMultiPolygon() if geometry.isMultipart() else [geometry.asPolygon()]
    points = [(point.x(), point.y()) for polygon in polygons if polygon for point in polygon[0]]
    return points or None


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path))) if path else ""


def feedback_from_layer(layer: QgsVectorLayer, rasters: Sequence[RasterFootprint] = (),
                        context: QgsCoordinateTransformContext | None = None) -> LabelsRead:
    """The labels layer's features (with the user's unsaved edits) as Feedback, in the layer's CRS."""
    return feedback_from_features(layer.getFeatures(), layer.crs(), rasters, context, labels_dir(layer))


# Feedback -> labels ---------------------------------------------------------------------------

def features_from_feedback(feedback: Feedback, layer_crs: QgsCoordinateReferenceSystem,
                           context: QgsCoordinateTransformContext | None = None) -> list[QgsFeature]:
    """The engine's labelled boxes as label features in `layer_crs`. A box without a CRS is in its
    raster's CRS, which is read from the raster's file: call this in a task."""
    context = context or QgsCoordinateTransformContext()
    fields = label_fields()
    features = []
    for box in feedback.boxes:
        crs = _box_crs(box)
        feature = QgsFeature(fields)
        feature.setGeometry(box_geometry(QgsRectangle(*box.bbox), crs, layer_crs, context)
                            if crs.isValid() else QgsGeometry.fromRect(QgsRectangle(*box.bbox)))
        feature.setAttributes([box.raster, label_text(box.positive)])
        features.append(feature)
    return features


def _box_crs(box) -> QgsCoordinateReferenceSystem:
    if box.crs:
        text = box.crs
        return (QgsCoordinateReferenceSystem(text) if text.upper().startswith("EPSG:")
                else QgsCoordinateReferenceSystem.fromWkt(text))
    from qgis.core import QgsRasterLayer

    return QgsRasterLayer(box.raster, "", "gdal").crs()
