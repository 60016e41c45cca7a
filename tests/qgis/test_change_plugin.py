"""Compare dates in the plugin, in real QGIS: the action opens the window; Hot spots and a box dragged with the
change tool (real mouse events) run as tasks and make the styled `rsir changes` layer and the panel's
before/after thumbnails; Cancel in the message bar stops a task. The rasters are tests/core/change_data.py's:
real imagery with blocks of river pasted over roofs, the bundled model, a real index."""
from __future__ import annotations

import pytest
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGraduatedSymbolRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsTask,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt

from rsir_qgis_plugin.layers import CHANGES_LAYER_NAME
from tests.core.change_data import AT_A, AT_B, TILE, window_box
from tests.qgis.change_dates import make_dates

TASK_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    return make_dates(tmp_path_factory.mktemp("change_plugin"))


def add_raster(project: QgsProject, path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


@pytest.fixture
def compare(plugin, project, qgis_canvas, dates):
    """The Compare dates window opened with the toolbar action, on the index of the results dock."""
    def open_with(after_path):
        before = add_raster(project, dates.before, "2019")
        after = add_raster(project, after_path, "2024")
        qgis_canvas.setLayers([after, before])
        qgis_canvas.setExtent(qgis_canvas.mapSettings().layerExtentToOutputExtent(before, before.extent()))
        qgis_canvas.refresh()
        QgsApplication.processEvents()
        plugin.search.show_index(dates.index)
        plugin.compare_action.trigger()
        dialog = plugin.change.dialog
        dialog.set_dates(before, after)
        return dialog, before, after

    return open_with


def in_map_crs(raster_crs, box, project) -> QgsRectangle:
    to_map = QgsCoordinateTransform(raster_crs, QgsCoordinateReferenceSystem("EPSG:3857"), project)
    return to_map.transformBoundingBox(QgsRectangle(*box))


def changes_layer(project: QgsProject):
    layers = project.mapLayersByName(CHANGES_LAYER_NAME)
    return layers[0] if layers else None


def drag(canvas, tool, box: QgsRectangle) -> None:
    """Press, move and release over `box` (map CRS) as real QgsMapMouseEvents, a few pixels inside it."""
    to_screen = canvas.getCoordinateTransform()
    top_left = to_screen.transform(box.xMinimum(), box.yMaximum())
    bottom_right = to_screen.transform(box.xMaximum(), box.yMinimum())
    start = QPoint(int(top_left.x()) + 2, int(top_left.y()) + 2)
    end = QPoint(int(bottom_right.x()) - 2, int(bottom_right.y()) - 2)
    left = Qt.MouseButton.LeftButton
    for kind, point, handler in ((QEvent.Type.MouseButtonPress, start, tool.canvasPressEvent),
                                 (QEvent.Type.MouseMove, end, tool.canvasMoveEvent),
                                 (QEvent.Type.MouseButtonRelease, end, tool.canvasReleaseEvent)):
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else left
        handler(QgsMapMouseEvent(canvas, kind, point, left, buttons, Qt.KeyboardModifier.NoModifier))


def test_the_action_opens_the_window_on_the_docks_index(plugin, compare, dates, qgis_iface):
    dialog, before, after = compare(dates.one)
    assert dialog.isVisible()
    assert plugin.compare_action.objectName() == "rsirCompareDates"
    assert dialog.index_widget.filePath() == str(dates.index)
    choice = dialog.choice()
    assert (choice.before.id(), choice.after.id(), choice.hotspots) == (before.id(), after.id(), "change")
    dialog.set_dates(before, before)  # the same layer twice: a message, no task
    assert plugin.change.hotspots() is None
    assert "two different layers" in plugin.change.panel.status_label.text()
    dialog.set_dates(before, after)
    dialog.index_widget.setFilePath(str(dates.index.parent))  # no index there
    assert plugin.change.hotspots() is None
    assert "No index in" in plugin.change.panel.status_label.text()


@pytest.mark.slow
def test_hot_spots_run_as_a_task_and_put_the_pasted_block_first(plugin, compare, dates, project, qgis_iface,
                                                                 qgis_canvas, qtbot):
    dialog, before, _ = compare(dates.one)
    with qtbot.waitSignal(plugin.change.changesFinished, timeout=TASK_TIMEOUT_MS) as finished:
        dialog.hotspots_button.click()
        progress = plugin.change.progress  # the message bar shows the task with a Cancel button
        assert progress is not None and progress.item in qgis_iface.messageBar().items()
        assert isinstance(plugin.change.task, QgsTask)
    outcome = finished.args[0]
    assert plugin.change.progress is None and progress.item is None

    layer = changes_layer(project)
    assert layer is not None and layer.crs().authid() == "EPSG:3857"
    assert [f.name() for f in layer.fields()] == ["rank", "score", "before", "after"]
    assert isinstance(layer.renderer(), QgsGraduatedSymbolRenderer) and layer.labelsEnabled()
    features = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    assert len(features) == len(outcome.result.hits) >= 2
    first = features[0]
    assert (first["before"], first["after"]) == (str(dates.before), str(dates.one))
    expected = in_map_crs(before.crs(), window_box(dates.before, (*AT_A, TILE, TILE)), project)
    got = first.geometry().boundingBox()
    assert got.center().distance(expected.center()) < 0.01 * expected.width()

    rows = plugin.change.panel.rows()
    assert len(rows) == len(features)
    assert not rows[0].before_label.pixmap().isNull() and not rows[0].after_label.pixmap().isNull()
    before_rgb, after_rgb = outcome.thumbnails[1]
    assert before_rgb.shape == after_rgb.shape and abs(before_rgb.astype(int) - after_rgb).mean() > 10
    assert plugin.change.panel.isVisible()

    # A click on the second place zooms the map to it.
    panel = plugin.change.panel
    panel.place_list.itemClicked.emit(panel.place_list.item(1))
    assert qgis_canvas.extent().contains(features[1].geometry().boundingBox())


@pytest.mark.slow
def test_a_box_dragged_with_the_change_tool_searches_by_that_change(plugin, compare, dates, project,
                                                                     qgis_canvas, qtbot):
    dialog, before, _ = compare(dates.both)
    dialog.draw_button.click()
    assert qgis_canvas.mapTool() is plugin.change.map_tool and dialog.draw_button.isChecked()
    block_a, block_b = (in_map_crs(before.crs(), window_box(dates.before, (*at, TILE, TILE)), project)
                        for at in (AT_A, AT_B))
    with qtbot.waitSignal(plugin.change.changesFinished, timeout=TASK_TIMEOUT_MS) as finished:
        drag(qgis_canvas, plugin.change.map_tool, block_a)
    outcome = finished.args[0]
    assert outcome.result.scoring == "cosine" and len(outcome.request.examples) == 1
    assert outcome.request.examples[0].raster == str(dates.before)
    features = sorted(changes_layer(project).getFeatures(), key=lambda f: f["rank"])
    assert features[0].geometry().boundingBox().intersect(block_b).area() > 0.25 * block_b.area()
    for feature in features:  # the example's place is left out
        assert feature.geometry().boundingBox().intersect(block_a).area() < 0.01 * block_a.area()


@pytest.mark.slow
def test_cancel_in_the_message_bar_stops_the_task(plugin, compare, dates, project, qtbot, tmp_path):
    """A new after date (so its 49 places must be embedded) cancelled while it runs: no layer, nothing stored."""
    import shutil

    fresh = shutil.copy(dates.one, tmp_path / "after_new.tif")
    dialog, _, _ = compare(fresh)
    pairs = dates.index / "pairs"
    stored = set(pairs.iterdir()) if pairs.is_dir() else set()
    with qtbot.waitSignal(plugin.change.changesEnded, timeout=TASK_TIMEOUT_MS) as ended:
        task = plugin.change.hotspots()
        qtbot.waitUntil(lambda: task.status() == QgsTask.TaskStatus.Running, timeout=TASK_TIMEOUT_MS)
        plugin.change.progress.cancel_button.click()
    assert ended.args == ["cancelled"]
    assert changes_layer(project) is None
    assert (set(pairs.iterdir()) if pairs.is_dir() else set()) == stored
    assert plugin.change.panel.status_label.text() == "Cancelled."
    assert plugin.change.running_tasks() == []
