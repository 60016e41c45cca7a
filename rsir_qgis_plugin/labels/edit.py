"""Labels in the labels layer: added, changed, removed, found and counted (UI thread). Edits go into
the edit buffer while the user edits the layer, else straight into its data (a GeoPackage-backed
layer writes the file)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qgis.core import QgsCoordinateTransformContext, QgsFeature, QgsGeometry, QgsRectangle, QgsVectorLayer

from .convert import hit_geometry, ring_geometry
from .layer import LABEL_FIELD, POSITIVE, RASTER_FIELD, attribute_text, label_text, parse_label

SAME_BOX_TOLERANCE = 0.01  # of the box's size: a hit and a label this close are the same tile


@dataclass
class LabelCounts:
    positive: int = 0
    negative: int = 0
    other: int = 0  # features whose label is neither: ignored by a refined search

    def describe(self) -> str:
        text = f"{self.positive} positive, {self.negative} negative"
        return text + (f", {self.other} ignored (label not positive/negative)" if self.other else "")


def count_labels(layer: QgsVectorLayer | None) -> LabelCounts:
    counts = LabelCounts()
    if layer is None:
        return counts
    for feature in layer.getFeatures():
        positive = parse_label(feature[LABEL_FIELD])
        if positive is None:
            counts.other += 1
        elif positive:
            counts.positive += 1
        else:
            counts.negative += 1
    return counts


def add_label(layer: QgsVectorLayer, geometry: QgsGeometry, raster: str, positive: bool) -> int | None:
    """Add one labelled box (geometry in the layer's CRS). Returns the new feature's id, or None if
    the layer refused it."""
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geometry)
    feature[RASTER_FIELD] = raster
    feature[LABEL_FIELD] = label_text(positive)
    if layer.isEditable():
        ok = layer.addFeature(feature)
        new_id = feature.id() if ok else None
    else:
        ok, added = layer.dataProvider().addFeatures([feature])
        new_id = added[0].id() if ok and added else None
    layer.updateExtents()
    layer.triggerRepaint()
    return new_id


def set_label(layer: QgsVectorLayer, feature_id: int, positive: bool) -> None:
    index = layer.fields().indexOf(LABEL_FIELD)
    if layer.isEditable():
        layer.changeAttributeValue(feature_id, index, label_text(positive))
    else:
        layer.dataProvider().changeAttributeValues({feature_id: {index: label_text(positive)}})
    layer.triggerRepaint()


def remove_label(layer: QgsVectorLayer, feature_id: int) -> None:
    if layer.isEditable():
        layer.deleteFeature(feature_id)
    else:
        layer.dataProvider().deleteFeatures([feature_id])
    layer.updateExtents()
    layer.triggerRepaint()


def same_box(a: QgsRectangle, b: QgsRectangle) -> bool:
    """Two boxes that differ by less than SAME_BOX_TOLERANCE of their size (reprojection noise)."""
    tol = SAME_BOX_TOLERANCE * max(a.width(), a.height(), b.width(), b.height())
    return (abs(a.xMinimum() - b.xMinimum()) <= tol and abs(a.xMaximum() - b.xMaximum()) <= tol
            and abs(a.yMinimum() - b.yMinimum()) <= tol and abs(a.yMaximum() - b.yMaximum()) <= tol)


def find_label(layer: QgsVectorLayer, raster: str, geometry: QgsGeometry) -> QgsFeature | None:
    """The label feature on `raster` whose box is `geometry`'s (both in the layer's CRS)."""
    box = geometry.boundingBox()
    for feature in layer.getFeatures(box):
        on_raster = attribute_text(feature[RASTER_FIELD]) == raster
        if on_raster and same_box(feature.geometry().boundingBox(), box):
            return feature
    return None


def mark_hit(layer: QgsVectorLayer, hit, label: str, context: QgsCoordinateTransformContext) -> None:
    """Label a hit's tile 'positive' or 'negative', or ('') remove its label."""
    geometry = hit_geometry(hit, layer.crs(), context)
    existing = find_label(layer, str(hit.raster), geometry)
    if not label:
        if existing is not None:
            remove_label(layer, existing.id())
    elif existing is not None:
        set_label(layer, existing.id(), label == POSITIVE)
    else:
        add_label(layer, geometry, str(hit.raster), label == POSITIVE)


def hit_labels(layer: QgsVectorLayer, hits: Iterable,
               context: QgsCoordinateTransformContext) -> dict[int, str]:
    """rank -> label of the hits that the labels layer holds."""
    found = {}
    for hit in hits:
        geometry = hit_geometry(hit, layer.crs(), context)
        feature = find_label(layer, str(hit.raster), geometry)
        if feature is not None:
            positive = parse_label(feature[LABEL_FIELD])
            if positive is not None:
                found[hit.rank] = label_text(positive)
    return found


def label_query_box(layer: QgsVectorLayer, result, context: QgsCoordinateTransformContext) -> None:
    """A box search's query box as a positive label, unless the layer holds it already (a refined
    search has no query box of its own: nothing then)."""
    if not result.query_polygon or not result.query_raster:
        return
    geometry = ring_geometry(result.query_polygon, result.query_crs_wkt, layer.crs(), context)
    if find_label(layer, str(result.query_raster), geometry) is None:
        add_label(layer, geometry, str(result.query_raster), True)
