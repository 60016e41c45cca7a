"""The dock's Review a sample box in real QGIS: a map layer of a real map file, the sample drawn in a task,
each polygon shown with its thumbnail and the canvas zoomed to it, marked by real Y/N key events (Backspace
steps back); then the estimate shown and the marked sample and labels written, as the engine reads them."""
from __future__ import annotations

import pytest
import rasterio
from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsRectangle, QgsVectorLayer
from qgis.PyQt.QtCore import Qt

from rsir_qgis_plugin.core.examples import Feedback, LabelledBox
from rsir_qgis_plugin.core.labels_io import read_labels, write_labels
from rsir_qgis_plugin.core.review_io import read_review
from tests.core.test_review_cli import write_tile_map

TASK_MS = 60_000


@pytest.fixture
def map_layer(project, tmp_path):
    path, raster = write_tile_map(tmp_path)
    layer = QgsVectorLayer(f"{path}|layername=rsir_map", "rsir map", "ogr")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer, path, raster


def relevant(map_id: int) -> bool:
    return map_id % 3 != 0


def test_review_a_sample_with_keys(plugin, project, map_layer, qgis_canvas, qtbot):
    layer, path, raster = map_layer
    panel = plugin.dock.review_panel
    panel.layer_combo.setLayer(layer)
    assert panel.labels_widget.filePath() == str(path.with_name("map_review_labels.gpkg"))
    panel.sample_spin.setValue(9)
    with qtbot.waitSignal(panel.sampleReady, timeout=TASK_MS) as drawn:
        panel.review_button.click()
    review = drawn.args[0]
    assert len(review.items) == 9 and [s.size for s in review.strata] == [10, 10, 10]
    to_canvas = QgsCoordinateTransform(QgsCoordinateReferenceSystem.fromWkt(review.crs_wkt),
                                       qgis_canvas.mapSettings().destinationCrs(), project)
    target = panel.thumb_label
    for position, item in enumerate(review.items):
        assert f"Polygon {position + 1} of 9" in panel.item_label.text()
        pixmap = target.pixmap()
        assert pixmap is not None and not pixmap.isNull() and pixmap.width() == 112  # the polygon's thumbnail
        box = to_canvas.transformBoundingBox(QgsRectangle(*item.bbox))
        extent = qgis_canvas.extent()
        assert extent.contains(box) and extent.width() < box.width() * 4  # zoomed to it
        if position == 0:  # a slip, corrected: N, Backspace, then the right key
            qtbot.keyClick(target, Qt.Key.Key_N if relevant(item.map_id) else Qt.Key.Key_Y)
            assert "Polygon 2 of 9" in panel.item_label.text()
            wrong = "0 yes, 1 no" if relevant(item.map_id) else "1 yes, 0 no"
            assert panel.status_label.text().startswith(f"1 of 9 marked: {wrong}")
            qtbot.keyClick(target, Qt.Key.Key_Backspace)
            assert "Polygon 1 of 9 (marked" in panel.item_label.text()
        key = Qt.Key.Key_Y if relevant(item.map_id) else Qt.Key.Key_N
        if position == len(review.items) - 1:
            with qtbot.waitSignal(panel.reviewFinished, timeout=TASK_MS) as finished:
                qtbot.keyClick(target, key)
        else:
            qtbot.keyClick(target, key)
            marks = [relevant(i.map_id) for i in review.items[:position + 1]]
            assert panel.status_label.text().startswith(
                f"{position + 1} of 9 marked: {sum(marks)} yes, {len(marks) - sum(marks)} no; the estimate")
    estimate = finished.args[0]
    assert panel.status_label.text().startswith(estimate.describe()[0])
    assert "stratum 3 (score 0.700-0.790" in panel.status_label.text()
    marked = read_review(path.with_name("map_review.gpkg"))
    assert [(i.map_id, i.relevant) for i in marked.items] == [(i.map_id, relevant(i.map_id)) for i in review.items]
    assert marked.estimate() == estimate
    labels = read_labels(path.with_name("map_review_labels.gpkg"))
    assert len(labels.boxes) == 9
    for item in review.items:  # each polygon (a tile) labelled as marked
        assert any(b.bbox == pytest.approx(item.bbox, abs=1e-6) and b.positive == relevant(item.map_id)
                   for b in labels.boxes)
    assert {b.raster for b in labels.boxes} == {str(raster)}
    qtbot.keyClick(target, Qt.Key.Key_Y)  # the review is over: keys mark nothing more
    assert read_review(path.with_name("map_review.gpkg")).marked == 9



def test_a_layer_that_is_not_a_map_file_is_one_line(plugin, project, map_layer, tmp_path, qtbot):
    _, _, raster = map_layer
    panel = plugin.dock.review_panel
    memory = QgsVectorLayer("Polygon?crs=EPSG:3857", "drawn", "memory")
    project.addMapLayer(memory)
    panel.layer_combo.setLayer(memory)
    panel.review_button.click()
    assert panel.status_label.text().startswith("Pick a map layer stored in a file")
    with rasterio.open(raster) as src:
        left, bottom = src.bounds.left, src.bounds.bottom
    labels = write_labels(Feedback((LabelledBox(str(raster), (left, bottom, left + 5, bottom + 5), None, True),)),
                          tmp_path / "labels.gpkg")
    other = QgsVectorLayer(f"{labels}|layername=rsir_labels", "labels", "ogr")
    project.addMapLayer(other)
    panel.layer_combo.setLayer(other)
    panel.review_button.click()
    qtbot.waitUntil(lambda: "no layer 'rsir_map'" in panel.status_label.text(), timeout=TASK_MS)
    assert panel.review is None and not panel.yes_button.isEnabled()
