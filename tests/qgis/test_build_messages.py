"""What a build tells the user in the message bar: progress that survives closing its item, one short
outcome line with Details on top of QGIS's own task notification, and a cancel that reads as one."""
from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.PyQt.QtCore import QCoreApplication, QEvent, Qt
from qgis.PyQt.QtWidgets import QPushButton, QToolButton

from rsir_qgis_plugin.settings import BuildSettings

BUILD_TIMEOUT_MS = 120_000


def _params(tiny_model, index_dir, raster, stride=64):
    settings = BuildSettings(tile_size=64, stride=stride, model_path=str(tiny_model))
    return settings.to_params(index_dir, [str(raster)])


def _details_button(item) -> QPushButton | None:
    return next((b for b in item.findChildren(QPushButton) if b.text() == "Details"), None)


def _close_current_item(bar) -> None:
    """Click the message bar's close button, as a user does, and let Qt delete the item."""
    close = next((b for b in bar.findChildren(QToolButton) if b.toolTip() == "Close"), None)
    if close is not None and close.isVisibleTo(bar):
        close.click()
    else:
        bar.popWidget()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def test_closing_the_progress_item_during_a_build_breaks_nothing(plugin, town_full, tiny_model, tmp_path,
                                                                  qgis_iface, qtbot):
    bar = qgis_iface.messageBar()
    params = _params(tiny_model, tmp_path / "index", town_full, stride=32)
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
        task = plugin.build.start(params)
        progress = plugin.build.progress
        assert bar.currentItem() is progress.item
        progress_bar = progress.progress
        _close_current_item(bar)
        assert not progress.shown()
        from qgis.PyQt import sip

        assert sip.isdeleted(progress_bar), "the item and its progress bar are gone"
        # Progress keeps coming from the worker thread: before the fix each update raised
        # "wrapped C/C++ object of type QProgressBar has been deleted" in the slot.
        seen = []
        task.progressChanged.connect(seen.append)
        qtbot.waitUntil(lambda: len(seen) >= 3, timeout=BUILD_TIMEOUT_MS)
    assert ended.args == ["succeeded"]
    assert plugin.build.outcome_item.level() == Qgis.MessageLevel.Success


def test_outcome_is_one_line_with_details_above_qgis_task_notification(plugin, town_half, tiny_model,
                                                                      tmp_path, qgis_iface, qtbot):
    bar = qgis_iface.messageBar()
    announced = []

    def qgis_notification(task_id, status):
        """What QGIS 3.22 does on every task's end (QgisApp::onTaskCompleteShowNotify, desktop
        notifications unavailable): a "Task complete"/"Task failed" item with the task's description."""
        if status in (QgsTask.TaskStatus.Complete, QgsTask.TaskStatus.Terminated):
            task = QgsApplication.taskManager().task(task_id)
            title = "Task complete" if status == QgsTask.TaskStatus.Complete else "Task failed"
            announced.append((title, task.description(), task.flags()))
            bar.pushWidget(bar.createMessage(title, task.description()), Qgis.MessageLevel.Info, 5)

    QgsApplication.taskManager().statusChanged.connect(qgis_notification)
    try:
        with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
            plugin.build.start(_params(tiny_model, tmp_path / "index", town_half))
    finally:
        QgsApplication.taskManager().statusChanged.disconnect(qgis_notification)
    assert ended.args == ["succeeded"]
    summary = plugin.build.summary
    item = plugin.build.outcome_item
    assert bar.currentItem() is item, "rsir's outcome is shown on top of QGIS's notification"
    assert "\n" not in item.text() and len(item.text()) < 100
    assert item.text().startswith(f"{summary.tiles_indexed} tiles indexed in ")
    # QGIS's own line (where QgsTask.Silent is missing) says what happened too.
    (title, description, flags), = announced
    assert description == f"rsir: {item.text()}"
    if hasattr(QgsTask.Flag, "Silent"):  # newer QGIS: no notification for the build at all
        assert flags & QgsTask.Flag.Silent

    button = _details_button(item)
    assert button is not None
    button.click()
    viewer = plugin.build.details.viewer
    assert viewer.isVisible() and viewer.text_edit.toPlainText() == summary.describe()
    viewer.close()


def test_a_failed_build_says_so_in_one_line_with_the_whole_error_in_details(plugin, town_half, tmp_path,
                                                                          qgis_iface, qtbot):
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"this is not an ONNX graph\n" * 40)
    params = BuildSettings(model_path=str(bad_model)).to_params(tmp_path / "index", [str(town_half)])
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
        task = plugin.build.start(params)
        errors = []
        task.failed.connect(lambda error: errors.append(task.error_details))
    assert ended.args == ["failed"]
    item = plugin.build.outcome_item
    assert item.level() == Qgis.MessageLevel.Critical and item.text().startswith("Build failed: ")
    assert "\n" not in item.text() and len(item.text()) <= 180
    assert qgis_iface.messageBar().currentItem() is item
    _details_button(item).click()
    assert plugin.build.details.viewer.text_edit.toPlainText() == errors[0]
    assert "bad.onnx" in errors[0]
    plugin.build.details.viewer.close()


def test_cancel_reads_as_cancelled_not_failed(plugin, town_full, tiny_model, tmp_path, qgis_iface, qtbot):
    """Issue 19 item 16: QGIS 3.22 titles a task that ends Terminated "Task failed" (and one that ends
    Complete "Task complete"), with its description: a clean cancel ends Complete, retitled."""
    descriptions = []

    def qgis_notification(task_id, status):
        if status in (QgsTask.TaskStatus.Complete, QgsTask.TaskStatus.Terminated):
            title = "Task complete" if status == QgsTask.TaskStatus.Complete else "Task failed"
            descriptions.append((title, QgsApplication.taskManager().task(task_id).description()))

    QgsApplication.taskManager().statusChanged.connect(qgis_notification)
    try:
        with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
            task = plugin.build.start(_params(tiny_model, tmp_path / "index", town_full, stride=16))
            qtbot.waitUntil(lambda: task.progress() >= 2, timeout=BUILD_TIMEOUT_MS)
            plugin.build.progress.cancel_button.click()
    finally:
        QgsApplication.taskManager().statusChanged.disconnect(qgis_notification)
    assert ended.args == ["cancelled"]
    item = plugin.build.outcome_item
    assert item.level() == Qgis.MessageLevel.Info
    assert "cancelled; the previous index is unchanged" in item.text()
    assert "fail" not in item.text().lower()
    assert descriptions == [("Task complete", "rsir: build cancelled; the previous index is unchanged")]


def test_a_cancel_after_the_index_was_committed_is_a_success(plugin, town_half, tiny_model, tmp_path, qtbot):
    """build_index returned, so the new index is in use: "cancelled, previous index unchanged" is false."""
    from rsir_qgis_plugin.core.store import read_index_info

    index_dir = tmp_path / "index"
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
        task = plugin.build.start(_params(tiny_model, index_dir, town_half))
        # In the worker thread, right after the engine's last cancellation check ("done" follows the commit).
        task.progressMessage.connect(lambda text: task.cancel() if text == "done" else None,
                                     Qt.ConnectionType.DirectConnection)
    assert ended.args == ["succeeded"]
    assert read_index_info(index_dir).tile_count == plugin.build.summary.tiles_total > 0


def test_a_build_where_one_raster_fails_warns_in_one_line(plugin, town_half, tiny_model, tmp_path, qtbot):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not really a GeoTIFF")
    params = BuildSettings(tile_size=64, stride=64, model_path=str(tiny_model)).to_params(
        tmp_path / "index", [str(town_half), str(broken)])
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
        plugin.build.start(params)
    assert ended.args == ["succeeded"]
    summary = plugin.build.summary
    item = plugin.build.outcome_item
    assert item.level() == Qgis.MessageLevel.Warning
    assert item.duration() == 0, "a warning stays until it is read"
    assert item.text().startswith(f"{summary.tiles_indexed} tiles indexed in ")
    assert item.text().endswith(", 1 raster failed") and "\n" not in item.text()
    _details_button(item).click()
    assert "broken.tif" in plugin.build.details.viewer.text_edit.toPlainText()
    plugin.build.details.viewer.close()


def test_summary_line_reads_the_core_summary_with_and_without_kept_rasters():
    from rsir_qgis_plugin.core.builder import BuildSummary
    from rsir_qgis_plugin.gui.build_controller import summary_line

    summary = BuildSummary(index_dir="/x", tiles_indexed=993, tiles_total=993, seconds=12.3,
                           failed=[("/data/a.tif", "has 3 band(s); band(s) [9] requested")])
    assert summary_line(summary) == "993 tiles indexed in 12 s, 1 raster failed"
    summary.rasters_kept = 1  # the field the extended core adds
    assert summary_line(summary) == "993 tiles indexed in 12 s, 1 raster failed (1 kept its previous tiles)"
    summary = BuildSummary(index_dir="/x", tiles_total=993, rasters_unchanged=2, rasters_removed=1,
                           seconds=0.4)
    assert summary_line(summary) == "no new tiles to index; the index holds 993 tiles, 1 raster removed"
