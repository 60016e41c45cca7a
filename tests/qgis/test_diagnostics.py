"""The Diagnostics window in real QGIS: opened from the rsir menu action, filled by a task, copied with
a real click on Copy."""
from __future__ import annotations

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QEvent, Qt
from qgis.PyQt.QtWidgets import QAction, QApplication

from rsir_qgis_plugin.gui.diagnostics_dialog import GATHERING, DiagnosticsDialog

REPORT_TIMEOUT_MS = 60_000


def test_menu_action_opens_the_report_and_copy_puts_it_on_the_clipboard(plugin, qgis_iface, qtbot):
    [action] = [a for a in qgis_iface.mainWindow().findChildren(QAction) if a.objectName() == "rsirDiagnostics"]
    assert action.text() == "Diagnostics..." and action not in plugin.toolbar.actions()  # menu only
    action.trigger()
    dialog = plugin.diagnostics
    assert isinstance(dialog, DiagnosticsDialog) and dialog.isVisible()
    # The UI thread did not wait for the report: it shows "Gathering..." until the task is done.
    assert dialog.text_edit.toPlainText() == GATHERING and not dialog.copy_button.isEnabled()

    qtbot.waitUntil(lambda: dialog.text_edit.toPlainText() != GATHERING, timeout=REPORT_TIMEOUT_MS)
    report = dialog.text_edit.toPlainText()
    assert f"QGIS: {Qgis.version()}" in report
    assert "onnxruntime providers:" in report and "model default.onnx: opset 17" in report
    assert "rsir can index and search here." in report
    torch = next(line for line in report.splitlines() if " torch: " in line)
    assert "not imported here" in torch or torch.startswith("[optional]")  # never loaded into QGIS

    action.trigger()  # a second click brings the same window to the front
    assert plugin.diagnostics is dialog

    QApplication.clipboard().clear()
    qtbot.mouseClick(dialog.copy_button, Qt.MouseButton.LeftButton)
    copied = QApplication.clipboard().text()
    assert copied == report
    assert Qgis.version() in copied and "onnxruntime" in copied


def test_unload_closes_the_window_and_waits_for_its_task(qgis_iface, project, qtbot):
    import rsir_qgis_plugin

    loaded = rsir_qgis_plugin.classFactory(qgis_iface)
    loaded.initGui()
    loaded.diagnostics_action.trigger()
    task = loaded.diagnostics.task
    loaded.unload()  # while the report is still being gathered
    QgsApplication.processEvents()
    QgsApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert loaded.diagnostics is None
    assert not [w for w in QApplication.topLevelWidgets() if w.objectName() == "rsirDiagnosticsDialog"]
    from rsir_qgis_plugin.tasks import is_active

    assert not is_active(task)
