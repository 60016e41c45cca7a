"""Relevance feedback in the plugin: thumbs on the dock's hits and Shift-/Ctrl-drags on the map fill the
`rsir labels` layer; Refine runs search_feedback in a FeedbackSearchTask and replaces the hits; labels
saved to a GeoPackage come back in a new session. Real QGIS, real index, real model; only iface is a stub.
"""
from __future__ import annotations

import pytest
from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer
from qgis.PyQt.QtCore import QPoint, Qt

from rsir_qgis_plugin.labels import convert, edit
from rsir_qgis_plugin.labels.layer import find_labels_layer
from rsir_qgis_plugin.layers import owned_layer
from rsir_qgis_plugin.tasks import FeedbackSearchTask

from .conftest import SEARCH_TIMEOUT_MS


def tiles(outcome, ranks=None) -> set:
    return {(hit.raster, hit.window) for hit in outcome.result.hits if ranks is None or hit.rank in ranks}


def refine(plugin, qtbot):
    with qtbot.waitSignal(plugin.search.searchFinished, timeout=SEARCH_TIMEOUT_MS) as blocker:
        plugin.dock.refine_button.click()
        # The click returned at once: the search runs in a task, the UI thread waits for nothing.
        assert isinstance(plugin.search._task, FeedbackSearchTask)
    assert plugin.search._task is None  # done and forgotten
    return blocker.args[0]


def drag(canvas, start, end, modifiers):
    from qgis.PyQt.QtTest import QTest

    QTest.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, modifiers, QPoint(*start))
    QTest.mouseMove(canvas.viewport(), QPoint(*end))
    QTest.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, modifiers, QPoint(*end))


def test_thumbs_fill_the_labels_layer(searched):
    plugin, outcome = searched
    dock, project = plugin.dock, QgsProject.instance()
    assert find_labels_layer(project) is None
    assert not dock.refine_button.isEnabled() and not dock.save_labels_button.isEnabled()
    assert "Shift-drag" in dock.feedback_help.text() and "Ctrl-drag" in dock.feedback_help.text()

    dock.hit_row(1).up_button.click()
    layer = find_labels_layer(project)
    assert layer is not None and layer.name() == "rsir labels" and layer.crs().authid() == "EPSG:3857"
    # The first mark also labels the query box positive, so a refined search still looks for what it showed.
    rows = sorted((f["label"], f["raster"]) for f in layer.getFeatures())
    assert rows == [("positive", outcome.result.query_raster), ("positive", outcome.result.hits[0].raster)]
    query = next(owned_layer(project, "query").getFeatures()).geometry()
    assert any(edit.same_box(f.geometry().boundingBox(), query.boundingBox()) for f in layer.getFeatures())
    hit_one = next(f for f in owned_layer(project, "hits").getFeatures() if f["rank"] == 1).geometry()
    assert edit.find_label(layer, outcome.result.hits[0].raster, hit_one) is not None

    dock.hit_row(2).down_button.click()
    dock.hit_row(3).down_button.click()
    assert "2 positive, 2 negative" in dock.labels_label.text()
    assert dock.refine_button.isEnabled() and dock.save_labels_button.isEnabled()

    dock.hit_row(3).up_button.click()  # changes its mind: the same feature, relabelled
    assert dock.hit_row(3).label() == "positive" and not dock.hit_row(3).down_button.isChecked()
    assert layer.featureCount() == 4 and edit.count_labels(layer).positive == 3
    dock.hit_row(3).up_button.click()  # and takes it back: the feature is gone
    assert layer.featureCount() == 3 and dock.hit_row(3).label() == ""
    # Later marks do not add the query box again.
    query_box = query.boundingBox()
    assert sum(1 for f in layer.getFeatures() if edit.same_box(f.geometry().boundingBox(), query_box)) == 1

    # Editing the layer by hand (attribute table, digitizing) shows in the dock.
    layer.startEditing()
    hit_two = outcome.result.hits[1]
    second = edit.find_label(layer, hit_two.raster,
                             convert.hit_geometry(hit_two, layer.crs(), project.transformContext()))
    layer.deleteFeature(second.id())
    assert layer.commitChanges()
    assert dock.hit_row(2).label() == "" and "2 positive, 0 negative" in dock.labels_label.text()


def test_refine_replaces_the_hits_without_the_labelled_tiles(searched, qtbot):
    plugin, outcome = searched
    dock, project = plugin.dock, QgsProject.instance()
    before_layer = {f.geometry().asWkt(2) for f in owned_layer(project, "hits").getFeatures()}
    for rank in (1, 2):
        dock.hit_row(rank).up_button.click()
    for rank in (5, 6):
        dock.hit_row(rank).down_button.click()
    labelled = tiles(outcome, {1, 2, 5, 6})

    refined = refine(plugin, qtbot)
    assert refined.feedback is not None and len(refined.feedback.boxes) == 5  # 4 hits + the query box
    assert len(refined.feedback.positives()) == 3 and refined.notes == []
    assert refined.result.scoring == "probability"  # >= 2 positives and >= 2 negatives: the classifier
    assert dock.hit_row(1).text_label.text().startswith(f"#1   p {refined.result.hits[0].score:.3f}")
    assert len(refined.result.hits) == 6
    assert not labelled & tiles(refined), "a labelled tile came back as a hit"
    hits_layer = owned_layer(project, "hits")
    after_layer = {f.geometry().asWkt(2) for f in hits_layer.getFeatures()}
    assert hits_layer.featureCount() == 6 and after_layer != before_layer
    assert sorted(f["rank"] for f in hits_layer.getFeatures()) == list(range(1, 7))
    assert owned_layer(project, "query").featureCount() == 0  # a refined search has no single query box
    assert "refined with 3 positive and 2 negative" in dock.status_label.text()
    # The new hits are listed unlabelled (none of them is labelled), and can be marked in turn.
    assert all(dock.hit_row(rank).label() == "" for rank in range(1, 7))
    dock.hit_row(1).down_button.click()
    assert edit.count_labels(find_labels_layer(project)).negative == 3
    again = refine(plugin, qtbot)
    assert not (labelled | tiles(refined, {1})) & tiles(again)


def test_shift_and_ctrl_drags_label_boxes_and_refine_uses_them(plugin, town_layer, town_index, qgis_canvas,
                                                               qtbot, qgis_iface):
    """Without any search first: a positive box drawn on the map is a query of its own."""
    plugin.search.show_index(town_index)
    plugin.dock.k_spin.setValue(5)
    plugin.find_action.trigger()
    project = QgsProject.instance()
    drag(qgis_canvas, (270, 120), (330, 180), Qt.KeyboardModifier.ShiftModifier)
    drag(qgis_canvas, (280, 400), (340, 460), Qt.KeyboardModifier.ControlModifier)
    # Off the raster: refused, said why.
    drag(qgis_canvas, (5, 5), (40, 40), Qt.KeyboardModifier.ShiftModifier)
    layer = find_labels_layer(project)
    assert owned_layer(project, "hits") is None  # no search ran
    rows = [(f["label"], f["raster"]) for f in layer.getFeatures()]
    assert rows == [("positive", str(town_layer.source())), ("negative", str(town_layer.source()))]
    drawn = next(layer.getFeatures()).geometry().boundingBox()
    to_map = qgis_canvas.getCoordinateTransform()
    assert drawn.xMinimum() == pytest.approx(to_map.toMapCoordinates(270, 120).x())
    texts = [m for level in qgis_iface.messageBar().messages.values() for m in level]
    assert any("no label added" in m for m in texts)

    refined = refine(plugin, qtbot)
    assert [b.positive for b in refined.feedback.boxes] == [True, False]
    assert len(refined.result.hits) == 5
    # Exclude-overlap is on: no hit overlaps a labelled box.
    hit_geometries = [f.geometry() for f in owned_layer(project, "hits").getFeatures()]
    for feature in layer.getFeatures():
        assert not any(g.intersection(feature.geometry()).area() > 1e-6 for g in hit_geometries)


def test_refine_without_positive_labels_runs_nothing(searched, qgis_iface):
    plugin, _ = searched
    plugin.dock.refine_button.setEnabled(True)  # even if the button were pressed
    assert plugin.search.refine() is None
    texts = [m for level in qgis_iface.messageBar().messages.values() for m in level]
    assert any("Nothing to refine with" in m for m in texts)


def test_labels_saved_survive_a_new_session(searched, qtbot, tmp_path):
    plugin, outcome = searched
    dock, project = plugin.dock, QgsProject.instance()
    dock.hit_row(1).up_button.click()
    dock.hit_row(4).down_button.click()
    marked = convert.feedback_from_layer(find_labels_layer(project)).feedback
    path = tmp_path / "marks.gpkg"
    with qtbot.waitSignal(plugin.search.labels.labelsSaved, timeout=SEARCH_TIMEOUT_MS):
        dock.saveLabelsRequested.emit(str(path))  # what "Save labels..." emits after its file dialog
    layer = find_labels_layer(project)
    # The labels layer is now the file: later marks are written into it.
    assert layer.providerType() == "ogr" and layer.source().startswith(str(path))
    assert layer.name() == "rsir labels" and len([lyr for lyr in project.mapLayers().values()
                                                  if lyr.name() == "rsir labels"]) == 1
    dock.hit_row(5).down_button.click()
    assert QgsVectorLayer(f"{path}|layername=rsir_labels", "x", "ogr").featureCount() == 4
    assert dock.hit_row(1).label() == "positive"

    # QGIS restarts: a new project, the raster again, then "Load labels...".
    project.clear()
    assert dock.save_labels_button.isEnabled() is False
    raster = QgsRasterLayer(str(outcome.result.query_raster), "town", "gdal")
    project.addMapLayer(raster)
    dock.loadLabelsRequested.emit(str(path))
    loaded = find_labels_layer(project)
    assert loaded is not None and loaded.featureCount() == 4
    reread = convert.feedback_from_layer(loaded).feedback
    assert [(b.raster, b.positive) for b in reread.boxes[:3]] == [(b.raster, b.positive)
                                                                  for b in marked.boxes]
    assert "2 positive, 2 negative" in dock.labels_label.text()
    refined = refine(plugin, qtbot)
    assert len(refined.feedback.boxes) == 4
    assert not tiles(outcome, {1, 4, 5}) & tiles(refined)


def test_a_labels_file_that_is_not_one_is_refused(plugin, project, tmp_path, qgis_iface):
    path = tmp_path / "other.gpkg"
    from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter

    other = QgsVectorLayer("Polygon?crs=EPSG:3857&field=name:string", "other", "memory")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    QgsVectorFileWriter.writeAsVectorFormatV3(other, str(path), QgsCoordinateTransformContext(), options)
    assert plugin.search.labels.load_labels(str(path)) is None
    texts = [m for level in qgis_iface.messageBar().messages.values() for m in level]
    assert any("holds no labels layer" in m for m in texts)


@pytest.fixture(scope="module")
def utm_raster(tmp_path_factory):
    """Real pixels georeferenced in UTM 33N 200 km west of its central meridian, where the grid turns
    by about 2 degrees against Web Mercator: a tile drawn in the map CRS is no longer axis-aligned."""
    from rasterio.transform import from_origin

    from tests.conftest import town_pixels, write_raster

    pixels, _ = town_pixels()
    return write_raster(tmp_path_factory.mktemp("utm") / "utm_town.tif", pixels[:, 352:672, 352:672].copy(),
                        crs="EPSG:32633", transform=from_origin(300000.0, 5300000.0, 0.1, 0.1))


@pytest.fixture(scope="module")
def utm_index(tmp_path_factory, tiny_model, utm_raster):
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    index_dir = tmp_path_factory.mktemp("utm_index") / "index"
    build_index(BuildParams(index_dir=index_dir, rasters=(utm_raster,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=64, stride_px=32)))
    return index_dir


def test_labelled_tiles_of_a_turned_raster_stay_out_without_overlap_exclusion(plugin, project, qgis_canvas,
                                                                               utm_raster, utm_index, qtbot):
    """With 'exclude overlapping tiles' off only the engine's "labelled tiles never come back" keeps them
    out, which needs each label to be its tile exactly: the plugin gives it in the raster's CRS."""
    layer = QgsRasterLayer(str(utm_raster), "utm", "gdal")
    project.addMapLayer(layer)
    qgis_canvas.setLayers([layer])
    qgis_canvas.setExtent(qgis_canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent()))
    plugin.search.show_index(utm_index)
    plugin.dock.k_spin.setValue(8)
    plugin.dock.overlap_check.setChecked(False)
    extent = layer.extent()
    box = QgsRectangle(extent.xMinimum() + 10, extent.yMinimum() + 10, extent.xMinimum() + 16.4,
                       extent.yMinimum() + 16.4)
    with qtbot.waitSignal(plugin.search.searchFinished, timeout=SEARCH_TIMEOUT_MS) as blocker:
        assert plugin.search_box(box, QgsCoordinateReferenceSystem("EPSG:32633")) is not None
    outcome = blocker.args[0]
    for rank in (1, 2, 3):
        plugin.dock.hit_row(rank).up_button.click()
    for rank in (7, 8):
        plugin.dock.hit_row(rank).down_button.click()

    labels_layer = find_labels_layer(QgsProject.instance())
    assert labels_layer.crs().authid() == "EPSG:3857"
    read = convert.feedback_from_layer(labels_layer, convert.footprints([layer]), project.transformContext())
    raster = outcome.result.hits[0].raster
    hit_boxes = [b for b in read.feedback.boxes if b.crs == "EPSG:32633" and b.raster == raster]
    assert len(hit_boxes) == 6  # five hits and the query box, all in the raster's CRS
    marked = [h for h in outcome.result.hits if h.rank in (1, 2, 3, 7, 8)]
    for tile_bounds in [convert.ring_bounds(h.polygon) for h in marked]:
        assert any(b.bbox == pytest.approx(tile_bounds, abs=1e-3) for b in hit_boxes)
    # In the map's CRS the same tiles' boxes are larger than the tiles: read that way they would not be tiles.
    turned = convert.hit_geometry(outcome.result.hits[0], labels_layer.crs(), project.transformContext())
    assert turned.area() < 0.97 * turned.boundingBox().area()

    refined = refine(plugin, qtbot)
    assert len(refined.result.hits) == 8
    assert not tiles(outcome, {1, 2, 3, 7, 8}) & tiles(refined), "a labelled tile came back as a hit"
