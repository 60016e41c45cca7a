"""QGIS side of rasters and hits: file paths of raster layers, CRS strings for the engine,
hit polygons as QgsFeatures, and the styled `rsir hits` / `rsir query` / `rsir changes` layers.

Shared by the dock, the build dialog, labels/ and the Processing algorithms. The feature helpers only
create QgsGeometry/QgsFeature objects, which is safe in a QgsTask's worker thread.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeLayer,
    QgsMapLayer,
    QgsPalLayerSettings,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsRendererRange,
    QgsSingleSymbolRenderer,
    QgsStyle,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor

from .fields import field_type

HITS_LAYER_NAME = "rsir hits"
QUERY_LAYER_NAME = "rsir query"
CHANGES_LAYER_NAME = "rsir changes"
# Custom layer property marking the layers this plugin owns, so a search replaces them.
ROLE_PROPERTY = "rsir/role"
SCORE_CLASSES = 5
QUERY_COLOR = "230,0,126"


def raster_file_path(layer: QgsMapLayer) -> str | None:
    """The local file behind a GDAL raster layer, or None (web services, virtual rasters in memory)."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    path = layer.source().split("|")[0]
    return path if os.path.isfile(path) else None


def project_rasters(project: QgsProject | None = None) -> list[QgsRasterLayer]:
    """File-based raster layers of the project, in layer-tree order (top first)."""
    project = project or QgsProject.instance()
    layers = project.layerTreeRoot().layerOrder()
    return [layer for layer in layers if raster_file_path(layer)]


def crs_for_engine(crs: QgsCoordinateReferenceSystem) -> str:
    """A CRS string rasterio's CRS.from_user_input accepts: the EPSG code when there is one, else WKT."""
    authid = crs.authid()
    if authid.upper().startswith("EPSG:"):
        return authid
    return crs.toWkt(QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL)


def box_in_crs(box: QgsRectangle, source: QgsCoordinateReferenceSystem, target: QgsCoordinateReferenceSystem,
               context: QgsCoordinateTransformContext) -> QgsRectangle:
    """The box's bounding rectangle in `target`, with densified edges (a reprojected box bends)."""
    if source == target:
        return QgsRectangle(box)
    return QgsCoordinateTransform(source, target, context).transformBoundingBox(box)


def query_raster(box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, layers: Sequence[QgsRasterLayer],
                 context: QgsCoordinateTransformContext) -> tuple[QgsRasterLayer, QgsRectangle] | None:
    """The first (topmost) raster whose extent holds the box's centre, with the box in that raster's CRS."""
    for layer in layers:
        try:
            local = box_in_crs(box, box_crs, layer.crs(), context)
        except Exception:  # noqa: BLE001 - QgsCsException: the box is outside the raster CRS's valid area
            continue
        if layer.extent().contains(local.center()):
            return layer, local
    return None


class HitFeatureFactory:
    """Turns engine hits (rings in each raster's CRS) into features in one destination CRS."""

    def __init__(self, dest_crs: QgsCoordinateReferenceSystem, context: QgsCoordinateTransformContext):
        self.dest_crs = dest_crs
        self.context = context
        self._transforms: dict[str, QgsCoordinateTransform | None] = {}

    def geometry(self, ring: Iterable[tuple[float, float]], crs_wkt: str) -> QgsGeometry:
        geometry = QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in ring]])
        transform = self._transform(crs_wkt)
        if transform is not None:
            geometry = geometry.densifyByCount(4)  # so that straight tile edges may bend when reprojected
            geometry.transform(transform)
        return geometry

    def hit_feature(self, hit, fields: QgsFields) -> QgsFeature:
        feature = QgsFeature(fields)
        feature.setGeometry(self.geometry(hit.polygon, hit.crs_wkt))
        feature.setAttributes([hit.rank, float(hit.score), str(hit.raster)])
        return feature

    def change_feature(self, change, fields: QgsFields) -> QgsFeature:
        """A place of a search through time (core ChangeHit): the before tile, fields of change_fields()."""
        feature = QgsFeature(fields)
        feature.setGeometry(self.geometry(change.hit.polygon, change.hit.crs_wkt))
        feature.setAttributes([change.rank, float(change.score), str(change.before), str(change.after)])
        return feature

    def _transform(self, crs_wkt: str) -> QgsCoordinateTransform | None:
        if crs_wkt not in self._transforms:
            source = QgsCoordinateReferenceSystem.fromWkt(crs_wkt) if crs_wkt else QgsCoordinateReferenceSystem()
            if not source.isValid() or source == self.dest_crs:
                self._transforms[crs_wkt] = None  # same CRS, or a raster without one: use as is
            else:
                self._transforms[crs_wkt] = QgsCoordinateTransform(source, self.dest_crs, self.context)
        return self._transforms[crs_wkt]


def hit_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField("rank", field_type("int")))
    fields.append(QgsField("score", field_type("double")))
    fields.append(QgsField("raster", field_type("string")))
    return fields


def change_fields() -> QgsFields:
    """rank, score, before, after: the fields of core/changes_io's layer rsir_changes."""
    fields = QgsFields()
    fields.append(QgsField("rank", field_type("int")))
    fields.append(QgsField("score", field_type("double")))
    fields.append(QgsField("before", field_type("string")))
    fields.append(QgsField("after", field_type("string")))
    return fields


def query_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField("raster", field_type("string")))
    return fields


def polygon_memory_layer(name: str, crs: QgsCoordinateReferenceSystem,
                         fields: QgsFields) -> QgsVectorLayer:
    """An empty polygon layer in memory with `fields` (the result layers' and the labels layer's start)."""
    layer = QgsVectorLayer("Polygon", name, "memory")
    layer.setCrs(crs)
    layer.dataProvider().addAttributes(fields.toList())
    layer.updateFields()
    return layer


def _result_layer(name: str, crs: QgsCoordinateReferenceSystem, fields: QgsFields,
                  role: str) -> QgsVectorLayer:
    layer = polygon_memory_layer(name, crs, fields)
    layer.setCustomProperty(ROLE_PROPERTY, role)
    # Results are cheap to recompute and can be saved to GeoPackage from the dock: QGIS need not
    # ask "lose scratch layers?" on every project close because of them.
    layer.setCustomProperty("skipMemoryLayersCheck", 1)
    return layer


def make_hits_layer(crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    layer = _result_layer(HITS_LAYER_NAME, crs, hit_fields(), "hits")
    _label_ranks(layer)
    return layer


def make_changes_layer(crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    layer = _result_layer(CHANGES_LAYER_NAME, crs, change_fields(), "changes")
    _label_ranks(layer)
    return layer


def make_query_layer(crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    layer = _result_layer(QUERY_LAYER_NAME, crs, query_fields(), "query")
    # Dashed outline, no fill: the query stays visible on top of the hits and the imagery.
    layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple({
        "color": "0,0,0,0", "outline_color": QUERY_COLOR, "outline_width": "0.8",
        "outline_style": "dash", "style": "no"})))
    return layer


def style_hits_by_score(layer: QgsVectorLayer, scores: Sequence[float]) -> None:
    """Graduated colours over the scores of this result: the best hits are the warmest."""
    ramp = QgsStyle.defaultStyle().colorRamp("Spectral")
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    if high - low < 1e-6:
        low, high = low - 0.01, high + 0.01
    step = (high - low) / SCORE_CLASSES
    ranges = []
    for i in range(SCORE_CLASSES):
        lower, upper = low + i * step, low + (i + 1) * step
        # Spectral runs red -> blue: the highest class gets red.
        color = ramp.color(1.0 - i / (SCORE_CLASSES - 1)) if ramp else QColor(255, 140, 0)
        symbol = QgsFillSymbol.createSimple({
            "color": f"{color.red()},{color.green()},{color.blue()},60",
            "outline_color": f"{color.red()},{color.green()},{color.blue()},255",
            "outline_width": "0.6"})
        ranges.append(QgsRendererRange(lower, upper, symbol, f"{lower:.3f} - {upper:.3f}"))
    layer.setRenderer(QgsGraduatedSymbolRenderer("score", ranges))
    layer.triggerRepaint()


def _label_ranks(layer: QgsVectorLayer) -> None:
    settings = QgsPalLayerSettings()
    settings.fieldName = "rank"
    settings.placement = QgsPalLayerSettings.Placement.OverPoint
    text = QgsTextFormat()
    text.setSize(10)
    text.setColor(QColor(20, 20, 20))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor(255, 255, 255))
    text.setBuffer(buffer)
    settings.setFormat(text)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)


def owned_layer(project: QgsProject, role: str) -> QgsVectorLayer | None:
    """The plugin's hits or query layer in the project, if the user has not removed it."""
    for layer in project.mapLayers().values():
        if layer.customProperty(ROLE_PROPERTY) == role:
            return layer
    return None


def add_on_top(project: QgsProject, layer: QgsMapLayer) -> None:
    """Add a layer above everything else, where a result is seen."""
    project.addMapLayer(layer, False)
    project.layerTreeRoot().insertChildNode(0, QgsLayerTreeLayer(layer))


def replace_features(layer: QgsVectorLayer, features: list[QgsFeature]) -> None:
    provider = layer.dataProvider()
    provider.truncate()
    provider.addFeatures(features)
    layer.updateExtents()
    layer.triggerRepaint()
