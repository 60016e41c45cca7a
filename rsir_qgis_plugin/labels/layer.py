"""The `rsir labels` layer itself: its fields and label values, a new one, its style, and finding,
adopting, replacing and retiring it in a project (UI thread)."""
from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsProject,
    QgsRendererCategory,
    QgsVectorLayer,
    QgsWkbTypes,
)

# The layout's words come from the engine, which reads and writes the same layer in files.
from ..core.label_records import LABEL_FIELD, NEGATIVE, POSITIVE, RASTER_FIELD, label_text
from ..core.label_records import parse_label as parse_label_text
from ..fields import field_type
from ..layers import ROLE_PROPERTY, polygon_memory_layer

__all__ = ["LABEL_FIELD", "NEGATIVE", "POSITIVE", "RASTER_FIELD", "label_text"]  # re-exported for labels/

LABELS_LAYER_NAME = "rsir labels"
LABELS_ROLE = "labels"
COLORS = {POSITIVE: "0,170,60", NEGATIVE: "220,30,30"}


def label_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField(RASTER_FIELD, field_type("string")))
    fields.append(QgsField(LABEL_FIELD, field_type("string")))
    return fields


def parse_label(value) -> bool | None:
    """An attribute as a label: True for 'positive', False for 'negative' (NULL or other text: None)."""
    return parse_label_text(attribute_text(value))


def attribute_text(value) -> str:
    """An attribute as stripped text; NULL (a QVariant in PyQGIS) and None are ''."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return ""
    return str(value).strip()


def make_labels_layer(crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    """An empty memory layer for labels, styled and marked as the plugin's labels layer.

    Unlike the hits, QGIS does ask before closing a project with unsaved labels: they are the
    user's work, not something recomputed in a second.
    """
    layer = polygon_memory_layer(LABELS_LAYER_NAME, crs, label_fields())
    adopt(layer)
    return layer


def has_label_fields(layer) -> bool:
    """A polygon vector layer with the `raster` and `label` fields (a saved labels GeoPackage, say)."""
    if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
        return False
    if layer.geometryType() != QgsWkbTypes.GeometryType.PolygonGeometry:
        return False
    names = set(layer.fields().names())
    return {RASTER_FIELD, LABEL_FIELD} <= names


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
    layer.setRenderer(QgsCategorizedSymbolRenderer(LABEL_FIELD, categories))
    layer.triggerRepaint()


def insert_in_place_of(project: QgsProject, old: QgsVectorLayer, new: QgsVectorLayer) -> None:
    """Add `new` to the project where `old` is in the layer tree (on top if `old` is not in it)."""
    root = project.layerTreeRoot()
    node = root.findLayer(old.id())
    project.addMapLayer(new, False)
    if node is None:
        root.insertLayer(0, new)
    else:
        parent = node.parent()
        parent.insertLayer(parent.children().index(node), new)


def retire(project: QgsProject, layer: QgsVectorLayer) -> None:
    """Stop using `layer` as the labels layer: removed if empty, else kept under another name."""
    if layer.featureCount() == 0:
        project.removeMapLayer(layer.id())
        return
    layer.setCustomProperty(ROLE_PROPERTY, "labels-previous")
    layer.setName(f"{LABELS_LAYER_NAME} (before loading)")
