"""Relevance-feedback labels as a QGIS layer: the `rsir labels` polygon layer, and its conversion to
and from the engine's `Feedback` (core/feedback.py).

Each feature is one labelled box: its polygon (in the layer's CRS), `raster` (the indexed raster
the box lies on) and `label` ('positive' or 'negative'). The layer is an ordinary vector layer:
the user can edit it, save it as a GeoPackage (layer `rsir_labels`) and load it again in a later
QGIS session, and whatever its features are when a search is refined is what the engine gets.

No widgets here (the dock, the search controller and Processing can all use it). Functions taking
features or footprints only work on values, so they may run in a QgsTask's worker thread; functions
taking a QgsVectorLayer or a project run on the UI thread.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
    QgsRendererCategory,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .gui.layers import ROLE_PROPERTY, HitFeatureFactory, crs_for_engine

if TYPE_CHECKING:  # the engine is imported when labels become a query, not when QGIS loads the plugin
    from .core.feedback import Feedback, LabelledBox

LABELS_LAYER_NAME = "rsir labels"
GPKG_LAYER_NAME = "rsir_labels"
LABELS_ROLE = "labels"
POSITIVE, NEGATIVE = "positive", "negative"
COLORS = {POSITIVE: "0,170,60", NEGATIVE: "220,30,30"}
SAME_BOX_TOLERANCE = 0.01  # of the box's size: a hit and a label this close are the same tile


def label_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField("raster", QVariant.String))
    fields.append(QgsField("label", QVariant.String))
    return fields


def label_text(positive: bool) -> str:
    return POSITIVE if positive else NEGATIVE


def parse_label(value) -> bool | None:
    """'positive' -> True, 'negative' -> False (any case, surrounding blanks ignored); else None."""
    return {POSITIVE: True, NEGATIVE: False}.get(_text(value).lower())


def _text(value) -> str:
    """An attribute as stripped text; NULL (a QVariant in PyQGIS) and None are ''."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return ""
    return str(value).strip()


# The layer --------------------------------------------------------------------------------

def make_labels_layer(crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    """An empty memory layer for labels, styled and marked as the plugin's labels layer.

    Unlike the hits, QGIS does ask before closing a project with unsaved labels: they are the
    user's work, not something recomputed in a second.
    """
    layer = QgsVectorLayer("Polygon", LABELS_LAYER_NAME, "memory")
    layer.setCrs(crs)
    layer.dataProvider().addAttributes(label_fields().toList())
    layer.updateFields()
    adopt(layer)
    return layer


def has_label_fields(layer) -> bool:
    """A polygon vector layer with the `raster` and `label` fields (a saved labels GeoPackage, say)."""
    if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
        return False
    if layer.geometryType() != QgsWkbTypes.PolygonGeometry:
        return False
    names = set(layer.fields().names())
    return {"raster", "label"} <= names


def adopt(layer: QgsVectorLayer) -> None:
    """Make `layer` the labels layer: mark it (the mark is kept in the project) and style it."""
    layer.setCustomProperty(ROLE_PROPERTY, LABELS_ROLE)
    style_labels(layer)


def find_labels_layer(project: QgsProject) -> QgsVectorLayer | None:
    """The project's labels layer: the one marked as such, else a layer with the labels' fields
    (a GeoPackage the user added from the Browser), which is then adopted."""
    layers = list(project.mapLayers().values())
    for layer in layers:
        if layer.customProperty(ROLE_PROPERTY) == LABELS_ROLE and has_label_fields(layer):
            return layer
    for layer in project.layerTreeRoot().layerOrder():
        if has_label_fields(layer) and layer.customProperty(ROLE_PROPERTY) is None:
            adopt(layer)
            return layer
    return None


def style_labels(layer: QgsVectorLayer) -> None:
    """Green outlines for positives, red for negatives, a light fill so the imagery shows through."""
    categories = []
    for value in (POSITIVE, NEGATIVE):
        color = COLORS[value]
        symbol = QgsFillSymbol.createSimple({"color": f"{color},40", "outline_color": f"{color},255",
                                             "outline_width": "0.9"})
        categories.append(QgsRendererCategory(value, symbol, value))
    other = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": "128,128,128,255",
                                        "outline_width": "0.5", "outline_style": "dot"})
    categories.append(QgsRendererCategory(None, other, "other (ignored)"))
    layer.setRenderer(QgsCategorizedSymbolRenderer("label", categories))
    layer.triggerRepaint()


def open_labels_file(path: str | Path) -> QgsVectorLayer | None:
    """The `rsir_labels` layer of a GeoPackage (or its only layer), as `rsir labels`; None if it has none."""
    for uri in (f"{path}|layername={GPKG_LAYER_NAME}", str(path)):
        layer = QgsVectorLayer(uri, LABELS_LAYER_NAME, "ogr")
        if has_label_fields(layer):
            return layer
    return None


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
        positive = parse_label(feature["label"])
        if positive is None:
            counts.other += 1
        elif positive:
            counts.positive += 1
        else:
            counts.negative += 1
    return counts


def add_label(layer: QgsVectorLayer, geometry: QgsGeometry, raster: str, positive: bool) -> int | None:
    """Add one labelled box (geometry in the layer's CRS); into the edit buffer while the user edits
    the layer, else straight into its data (a GeoPackage-backed layer writes the file). Returns the
    new feature's id, or None if the layer refused it."""
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geometry)
    feature["raster"] = raster
    feature["label"] = label_text(positive)
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
    index = layer.fields().indexOf("label")
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
        if _text(feature["raster"]) == raster and same_box(feature.geometry().boundingBox(), box):
            return feature
    return None


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
    from .core.feedback import LabelledBox

    return LabelledBox(raster=str(hit.raster), bbox=ring_bounds(hit.polygon), crs=hit.crs_wkt or None,
                       positive=positive)


def box_for_drawn(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, raster: str,
                  positive: bool) -> "LabelledBox":
    """A box drawn on the map as the engine's labelled box, in the map's CRS."""
    from .core.feedback import LabelledBox

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
    """Footprints of raster layers (UI thread), topmost first; see gui.layers.project_rasters."""
    from .gui.layers import raster_file_path

    return [RasterFootprint(raster_file_path(layer), layer.crs(), QgsRectangle(layer.extent()))
            for layer in layers if raster_file_path(layer)]


def raster_under(box: QgsRectangle, crs: QgsCoordinateReferenceSystem, rasters: Sequence[RasterFootprint],
                 context: QgsCoordinateTransformContext) -> str | None:
    """The first raster whose extent holds the box's centre (the rule of a drawn query box)."""
    from .gui.layers import box_in_crs

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
    from .core.feedback import Feedback, LabelledBox

    context = context or QgsCoordinateTransformContext()
    crs_text = crs_for_engine(crs) if crs.isValid() else None
    by_path = {_real(r.path): r for r in rasters}
    boxes, skipped = [], []
    for feature in features:
        fid = feature.id()
        positive = parse_label(feature["label"])
        if positive is None:
            skipped.append(f"feature {fid}: label '{_text(feature['label'])}' is neither "
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
        raster = _text(feature["raster"])
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


def labels_dir(layer: QgsVectorLayer) -> Path | None:
    """The folder of a file-backed labels layer (relative raster paths are relative to it), else None."""
    if layer.providerType() != "ogr":
        return None
    path = Path(layer.source().split("|")[0])
    return path.parent if path.is_file() else None


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


# Saving -------------------------------------------------------------------------------------

def write_labels(features: Sequence[QgsFeature], crs: QgsCoordinateReferenceSystem, path: str | Path,
                 context: QgsCoordinateTransformContext | None = None) -> Path:
    """Write label features to the `rsir_labels` layer of a GeoPackage; other layers of an existing
    file (saved hits, say) are kept. Values only: safe in a worker thread. Raises RsirError saying why."""
    from .core.errors import RsirError

    path = Path(path)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = GPKG_LAYER_NAME
    options.fileEncoding = "UTF-8"
    options.actionOnExistingFile = (QgsVectorFileWriter.CreateOrOverwriteLayer if path.exists()
                                    else QgsVectorFileWriter.CreateOrOverwriteFile)
    writer = QgsVectorFileWriter.create(str(path), label_fields(), QgsWkbTypes.Polygon, crs,
                                        context or QgsCoordinateTransformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        message = writer.errorMessage()
        del writer
        raise RsirError(f"cannot write {path}: {message}")
    fields = label_fields()
    out = []
    for source in features:
        feature = QgsFeature(fields)
        feature.setGeometry(source.geometry())
        feature.setAttributes([source["raster"], source["label"]])
        out.append(feature)
    ok = writer.addFeatures(out)
    message = writer.errorMessage()
    del writer  # closes the file
    if not ok:
        raise RsirError(f"cannot write the labels into {path}: {message}")
    return path
