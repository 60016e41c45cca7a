"""Conversions of labels: hits and drawn boxes to label geometries and to the engine's LabelledBox,
label features to the engine's Feedback (in a task's worker thread: values only), and back."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsGeometry,
    QgsRectangle,
    QgsVectorLayer,
)

from ..layers import HitFeatureFactory, box_in_crs, crs_for_engine, raster_file_path
from .files import labels_dir
from .layer import NEGATIVE, POSITIVE, attribute_text, label_fields, label_text, parse_label

if TYPE_CHECKING:  # the engine is imported when labels become a query, not when QGIS loads the plugin
    from ..core.feedback import Feedback, LabelledBox


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


def box_for_hit(hit, positive: bool) -> "LabelledBox":
    """A hit as the engine's labelled box: its tile's bounds in its raster's CRS."""
    from ..core.feedback import LabelledBox

    return LabelledBox(raster=str(hit.raster), bbox=ring_bounds(hit.polygon), crs=hit.crs_wkt or None,
                       positive=positive)


def box_for_drawn(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, raster: str,
                  positive: bool) -> "LabelledBox":
    """A box drawn on the map as the engine's labelled box, in the map's CRS."""
    from ..core.feedback import LabelledBox

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


@dataclass
class LabelsRead:
    """What a labels layer gave: the engine's Feedback and a line for each feature left out."""

    feedback: "Feedback"
    skipped: list[str] = field(default_factory=list)

    @property
    def positives(self) -> int:
        return sum(1 for box in self.feedback.boxes if box.positive)

    @property
    def negatives(self) -> int:
        return sum(1 for box in self.feedback.boxes if not box.positive)


def feedback_from_features(features: Iterable[QgsFeature], crs: QgsCoordinateReferenceSystem,
                           rasters: Sequence[RasterFootprint] = (),
                           context: QgsCoordinateTransformContext | None = None,
                           base_dir: str | Path | None = None) -> LabelsRead:
    """Label features (geometries in `crs`) as the engine's Feedback.

    Each box is its feature's bounding box in `crs`, or, when its raster is one of `rasters`, in
    that raster's CRS: a hit's tile drawn in a map CRS that turns it (a geographic map over a UTM
    raster) then comes back as exactly that tile, not as the larger box around it. A feature
    without a raster gets the raster under it (as a drawn box would); one without a usable label
    or geometry, or over no raster, is skipped and said why. A relative raster path is taken
    relative to `base_dir` (the folder of the labels file), as core.labels_io reads it.
    """
    from ..core.feedback import Feedback, LabelledBox

    context = context or QgsCoordinateTransformContext()
    crs_text = crs_for_engine(crs) if crs.isValid() else None
    by_path = {_real(r.path): r for r in rasters}
    boxes, skipped = [], []
    for feature in features:
        fid = feature.id()
        positive = parse_label(feature["label"])
        if positive is None:
            skipped.append(f"feature {fid}: label '{attribute_text(feature['label'])}' is neither "
                           f"'{POSITIVE}' nor '{NEGATIVE}'")
            continue
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            skipped.append(f"feature {fid}: no geometry")
            continue
        box = geometry.boundingBox()
        if box.width() <= 0 or box.height() <= 0:
            skipped.append(f"feature {fid}: its box has no area")
            continue
        raster = attribute_text(feature["raster"])
        if raster and base_dir is not None and not os.path.isabs(os.path.expanduser(raster)):
            raster = os.path.normpath(os.path.join(str(base_dir), raster))
        if not raster:
            raster = raster_under(box, crs, rasters, context) or ""
            if not raster:
                skipped.append(f"feature {fid}: no raster given and none of the project's rasters under it")
                continue
        box_crs = crs_text
        footprint = by_path.get(_real(raster))
        if footprint is not None and crs.isValid() and footprint.crs.isValid() and footprint.crs != crs:
            local = _bounds_in(geometry, crs, footprint.crs, context)
            if local is not None:
                box, box_crs = local, crs_for_engine(footprint.crs)
        boxes.append(LabelledBox(raster=raster, bbox=(box.xMinimum(), box.yMinimum(), box.xMaximum(),
                                                      box.yMaximum()), crs=box_crs, positive=positive))
    return LabelsRead(Feedback(boxes=tuple(boxes)), skipped)


def _bounds_in(geometry: QgsGeometry, source: QgsCoordinateReferenceSystem,
               target: QgsCoordinateReferenceSystem,
               context: QgsCoordinateTransformContext) -> QgsRectangle | None:
    """The bounding box of `geometry`'s vertices in `target` (None where they cannot be transformed)."""
    moved = QgsGeometry(geometry)
    try:
        moved.transform(QgsCoordinateTransform(source, target, context))
    except Exception:  # noqa: BLE001 - QgsCsException: then the box stays in the layer's CRS
        return None
    box = moved.boundingBox()
    return box if box.width() > 0 and box.height() > 0 else None


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path))) if path else ""


def feedback_from_layer(layer: QgsVectorLayer, rasters: Sequence[RasterFootprint] = (),
                        context: QgsCoordinateTransformContext | None = None) -> LabelsRead:
    """The labels layer's features (with the user's unsaved edits) as Feedback, in the layer's CRS."""
    return feedback_from_features(layer.getFeatures(), layer.crs(), rasters, context, labels_dir(layer))


# Feedback -> labels ---------------------------------------------------------------------------

def features_from_feedback(feedback: "Feedback", layer_crs: QgsCoordinateReferenceSystem,
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
