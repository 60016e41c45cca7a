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
    return lambda after_path: open_dates(plugin, project, qgis_canvas, dates.index, dates.before, after_path)


def open_dates(plugin, project, canvas, index, before_path, after_path):
    """Both dates on the map, the Compare dates window opened with the toolbar action on `index`."""
    before = add_raster(project, before_path, "2019")
    after = add_raster(project, after_path, "2024")
    canvas.setLayers([after, before])
    canvas.setExtent(canvas.mapSettings().layerExtentToOutputExtent(before, before.extent()))
    canvas.refresh()
    QgsApplication.processEvents()
    plugin.search.show_index(index)
    plugin.compare_action.trigger()
    dialog = plugin.change.dialog
    dialog.set_dates(before, after)
    return dialog, before, after


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


def viewport_drag(canvas, box: QgsRectangle, modifiers: Qt.KeyboardModifier) -> None:
    """A real drag over `box` (map CRS) on the canvas widget, a few pixels inside it, with keys held: the events go
    through QgsMapCanvas to the active map tool, as in QGIS."""
    from qgis.PyQt.QtTest import QTest

    to_screen = canvas.getCoordinateTransform()
    top_left = to_screen.transform(box.xMinimum(), box.yMaximum())
    bottom_right = to_screen.transform(box.xMaximum(), box.yMinimum())
    start = QPoint(int(top_left.x()) + 2, int(top_left.y()) + 2)
    end = QPoint(int(bottom_right.x()) - 2, int(bottom_right.y()) - 2)
    viewport = canvas.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, modifiers, start)
    for t in (0.3, 0.6, 1.0):
        QTest.mouseMove(viewport, QPoint(int(start.x() + (end.x() - start.x()) * t),
                                         int(start.y() + (end.y() - start.y()) * t)))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifiers, end)


@pytest.mark.slow
def test_change_examples_are_drawn_shift_and_ctrl_drags_add_more_and_the_search_is_saved_and_watched(
        plugin, project, qgis_canvas, qtbot, tmp_path):
    """A drag, a Shift-drag and a Ctrl-drag through the canvas: the `rsir change examples` layer holds them,
    styled like labels; the changes panel's Save search keeps the search (its real name dialog); a build
    through the plugin that indexes a later date brings its changes like the examples to the dock's badge."""
    import json
    import shutil

    from qgis.core import QgsCategorizedSymbolRenderer

    from rsir_qgis_plugin.gui.change_results import EXAMPLES_LAYER_NAME
    from rsir_qgis_plugin.settings import BuildSettings
    from tests.conftest import DEFAULT_MODEL
    from tests.qgis.test_standing import answer_name_dialog

    fresh = make_dates(tmp_path)  # its own index: this test adds a raster to it
    dialog, before, _ = open_dates(plugin, project, qgis_canvas, fresh.index, fresh.before, fresh.both)
    dialog.draw_button.click()

    def box(window):
        return in_map_crs(before.crs(), window_box(fresh.before, window), project)

    block_a, block_b = box((*AT_A, TILE, TILE)), box((*AT_B, TILE, TILE))
    drags = ((block_a, Qt.KeyboardModifier.NoModifier),
             (box((AT_A[0] + 16, AT_A[1] + 16, 64, 64)), Qt.KeyboardModifier.ShiftModifier),  # inside A
             (box((AT_A[0] + 48, AT_A[1], TILE, TILE)), Qt.KeyboardModifier.ControlModifier))  # half river, half roofs
    outcomes = []
    for number, (drawn, modifiers) in enumerate(drags, start=1):
        with qtbot.waitSignal(plugin.change.changesFinished, timeout=TASK_TIMEOUT_MS) as finished:
            viewport_drag(qgis_canvas, drawn, modifiers)
        outcomes.append(finished.args[0])
        [examples] = project.mapLayersByName(EXAMPLES_LAYER_NAME)
        features = list(examples.getFeatures())
        assert len(features) == number
        assert features[-1].geometry().boundingBox().intersect(drawn).area() > 0.9 * drawn.area()
    assert [example.positive for example in outcomes[-1].request.examples] == [True, True, False]
    assert [feature["label"] for feature in features] == ["positive", "positive", "negative"]
    assert isinstance(examples.renderer(), QgsCategorizedSymbolRenderer)
    assert {feature["raster"] for feature in features} == {str(fresh.before)}
    first = min(changes_layer(project).getFeatures(), key=lambda f: f["rank"])  # two positives: B first
    assert len(outcomes[1].request.examples) == 2
    assert first.geometry().boundingBox().intersect(block_b).area() > 0.25 * block_b.area()

    panel = plugin.change.panel
    assert panel.save_search_button.isEnabled()
    answer_name_dialog("rivers")
    panel.save_search_button.click()
    saved = fresh.index / "searches" / "rivers.json"
    qtbot.waitUntil(saved.exists, timeout=30_000)
    record = json.loads(saved.read_text())
    assert record["kind"] == "change" and [e["positive"] for e in record["examples"]] == [True, True, False]

    later = shutil.copy(fresh.both, tmp_path / "after_2025.tif")  # a later date, indexed
    params = BuildSettings(tile_size=TILE, stride=48, model_path=str(DEFAULT_MODEL)).to_params(
        fresh.index, [str(fresh.before), str(later)])
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=TASK_TIMEOUT_MS) as ended:
        plugin.build.start(params)
    assert ended.args == ["succeeded"]
    [report] = plugin.build.summary.standing
    assert report.problem is None and report.new_hits > 0
    badge = plugin.dock.new_hits_button
    assert badge.text() == f"New hits ({report.new_hits})"
    badge.click()
    [layer] = project.mapLayersByName("New hits: rivers")
    places = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    assert len(places) == report.new_hits and {f["after"] for f in places} == {str(later)}
    assert places[0].geometry().boundingBox().intersect(
        QgsRectangle(*window_box(fresh.before, (*AT_B, TILE, TILE)))).area() > 0
