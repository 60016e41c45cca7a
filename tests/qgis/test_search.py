"""A box dragged on the map runs a search task and ends as styled layers, a dock list and a file."""
from __future__ import annotations

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGraduatedSymbolRenderer,
    QgsProject,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt

from rsir_qgis_plugin.layers import HITS_LAYER_NAME, QUERY_LAYER_NAME, owned_layer

from .conftest import SEARCH_TIMEOUT_MS


def test_search_makes_the_hits_layer_with_fields_and_geometry(searched, town_layer, town_half):
    import rasterio
    from rasterio.windows import Window, bounds

    plugin, outcome = searched
    project = QgsProject.instance()
    hits = owned_layer(project, "hits")
    assert isinstance(hits, QgsVectorLayer) and hits.name() == HITS_LAYER_NAME
    assert [f.name() for f in hits.fields()] == ["rank", "score", "raster"]
    assert hits.crs().authid() == "EPSG:3857"  # the map CRS, not the raster's
    features = sorted(hits.getFeatures(), key=lambda f: f["rank"])
    assert [f["rank"] for f in features] == list(range(1, 7))
    scores = [f["score"] for f in features]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert {f["raster"] for f in features} == {str(town_half.resolve())}

    # Each polygon, brought back to the raster CRS, is exactly its tile's pixel window.
    back = QgsCoordinateTransform(hits.crs(), town_layer.crs(), project)
    with rasterio.open(town_half) as src:
        transform = src.transform
    for feature, hit in zip(features, outcome.result.hits):
        geometry = feature.geometry()
        geometry.transform(back)
        box = geometry.boundingBox()
        expected = bounds(Window(*hit.window), transform)
        assert (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()) == pytest.approx(expected, abs=1e-3)
        assert hit.window[2] == hit.window[3] == 64

    # The query box: its own layer, dashed, and no hit overlapping it (exclude-overlap was on).
    query = owned_layer(project, "query")
    assert query.name() == QUERY_LAYER_NAME and query.featureCount() == 1
    query_geometry = next(query.getFeatures()).geometry()
    assert not any(f.geometry().intersection(query_geometry).area() > 1e-6 for f in features)
    assert query.renderer().symbol().symbolLayer(0).strokeStyle() == Qt.PenStyle.DashLine

    # Graduated by score, labelled with the rank; both layers on top of the raster.
    assert isinstance(hits.renderer(), QgsGraduatedSymbolRenderer)
    assert hits.renderer().classAttribute() == "score"
    assert hits.labelsEnabled() and hits.labeling().settings().fieldName == "rank"
    order = [layer.id() for layer in project.layerTreeRoot().layerOrder()]
    assert order.index(hits.id()) < order.index(town_layer.id())
    assert order.index(query.id()) < order.index(town_layer.id())


def test_dock_lists_hits_with_thumbnails_and_zooms(searched, qgis_canvas):
    from qgis.PyQt.QtTest import QTest

    plugin, outcome = searched
    dock = plugin.dock
    assert dock.hit_list.count() == 6
    first = dock.hit_row(1)
    text = first.text_label.text()
    assert text.startswith("#1") and f"{outcome.result.hits[0].score:.3f}" in text
    assert dock.hit_list.item(0).data(Qt.ItemDataRole.AccessibleTextRole) == text
    # Thumbnails come from the raster's pixels, read in the task: not flat.
    assert set(outcome.thumbnails) == {1, 2, 3, 4, 5, 6}
    for rgb in outcome.thumbnails.values():
        assert rgb.shape[2] == 3 and rgb.std() > 5
    image = first.thumbnail.pixmap().toImage()
    assert not image.isNull()
    assert len({image.pixel(x, y) for x in range(0, 112, 8) for y in range(0, 112, 8)}) > 10
    # Each hit has its thumbs, unlabelled after a plain search.
    assert all(dock.hit_row(rank).label() == "" for rank in range(1, 7))

    # A real click on the third row's text (the row widget lets it through to the list) zooms to it.
    dock.show()
    item = dock.hit_list.item(2)  # rank 3
    dock.hit_list.scrollToItem(item)
    row = dock.hit_row(3)
    QTest.mouseClick(row.text_label, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     row.text_label.rect().center())
    hits = owned_layer(QgsProject.instance(), "hits")
    third = next(f for f in hits.getFeatures() if f["rank"] == 3)
    assert qgis_canvas.extent().contains(third.geometry().boundingBox())
    assert qgis_canvas.extent().width() < 10 * third.geometry().boundingBox().width()
    assert hits.selectedFeatureIds() == [], "selection would paint the hit opaque over the imagery"


def test_second_search_replaces_results_and_clear_removes_them(searched, search_by_drag):
    plugin, _ = searched
    project = QgsProject.instance()
    plugin.dock.k_spin.setValue(3)
    search_by_drag((280, 400), (340, 460))
    layers = [layer for layer in project.mapLayers().values() if layer.name() == HITS_LAYER_NAME]
    assert len(layers) == 1 and layers[0].featureCount() == 3
    assert plugin.dock.hit_list.count() == 3

    plugin.dock.clear_button.click()
    assert owned_layer(project, "hits") is None and owned_layer(project, "query") is None
    assert plugin.dock.hit_list.count() == 0


def test_save_to_geopackage(searched, tmp_path, qtbot):
    plugin, outcome = searched
    path = tmp_path / "hits.gpkg"
    plugin.search.save(str(path))
    qtbot.waitUntil(lambda: path.exists() and QgsVectorLayer(f"{path}|layername=rsir_hits", "h", "ogr").isValid(),
                    timeout=SEARCH_TIMEOUT_MS)
    saved = QgsVectorLayer(f"{path}|layername=rsir_hits", "saved", "ogr")
    assert saved.featureCount() == 6
    assert saved.crs() == QgsCoordinateReferenceSystem("EPSG:3857")  # saved in the map's CRS
    assert sorted(f["rank"] for f in saved.getFeatures()) == list(range(1, 7))


def test_box_off_the_rasters_says_so_and_runs_nothing(plugin, town_layer, town_index, qgis_iface):
    from qgis.core import QgsRectangle

    plugin.search.show_index(town_index)
    task = plugin.search_box(QgsRectangle(0, 0, 100, 100))
    assert task is None
    texts = [m for level in qgis_iface.messageBar().messages.values() for m in level]
    assert any("not over a file-based raster" in m for m in texts)


def test_search_from_a_geographic_map_crs(plugin, town_layer, town_index, qgis_canvas, search_by_drag):
    """EPSG:4326 maps (degrees, lat/lon axis order in the EPSG definition) are where CRS bugs show."""
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    qgis_canvas.setDestinationCrs(wgs84)
    QgsProject.instance().setCrs(wgs84)
    qgis_canvas.setExtent(qgis_canvas.mapSettings().layerExtentToOutputExtent(town_layer, town_layer.extent()))
    plugin.search.show_index(town_index)
    plugin.dock.k_spin.setValue(4)
    outcome = search_by_drag((270, 120), (330, 180))

    hits = owned_layer(QgsProject.instance(), "hits")
    assert hits.crs() == wgs84 and hits.featureCount() == 4
    extent_4326 = QgsCoordinateTransform(town_layer.crs(), wgs84, QgsProject.instance()).transformBoundingBox(
        town_layer.extent())
    for feature in hits.getFeatures():
        box = feature.geometry().boundingBox()
        assert extent_4326.contains(box)
        assert box.width() < 1e-3 and box.height() < 1e-3  # 6.4 m tiles, in degrees
    # The query polygon lies where the box was drawn (within the snapping to the raster's pixels).
    query = next(owned_layer(QgsProject.instance(), "query").getFeatures()).geometry().boundingBox()
    to_map = qgis_canvas.getCoordinateTransform()
    drawn_center = to_map.toMapCoordinates(300, 150)
    assert abs(query.center().x() - drawn_center.x()) < query.width() * 0.1
    assert abs(query.center().y() - drawn_center.y()) < query.height() * 0.1
    assert outcome.result.query_raster == str(town_layer.source())
