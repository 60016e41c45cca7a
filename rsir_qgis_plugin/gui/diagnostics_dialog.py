"""The Diagnostics window: what rsir finds in this QGIS (versions, packages, devices, models), to copy
into a bug report. The report is gathered in a task: creating onnxruntime sessions takes seconds."""
from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase, QGuiApplication
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ..diagnostics import host_facts
from ..tasks import InfoTask, is_active

GATHERING = "Gathering..."


class DiagnosticsDialog(QDialog):
    """The report, read-only, with Copy (enabled once it is there); not modal."""

    reportReady = pyqtSignal(str)  # the report's text, or why it could not be gathered

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("rsirDiagnosticsDialog")
        self.setWindowTitle("rsir diagnostics")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.text_edit = QPlainTextEdit(GATHERING, self)
        self.text_edit.setReadOnly(True)
        self.text_edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the report to the clipboard, for a bug report")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text_edit)
        layout.addWidget(buttons)
        self.resize(860, 480)

        # QGIS's and Qt's facts are read here, on the UI thread; the rest in the task.
        self.task = InfoTask("rsir: gathering diagnostics", _report, host_facts())
        self.task.succeeded.connect(self._show)
        self.task.failed.connect(self._show_failure)
        QgsApplication.taskManager().addTask(self.task)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text_edit.toPlainText())

    def _show(self, text: str) -> None:
        self.text_edit.setPlainText(text)
        self.copy_button.setEnabled(True)
        self.reportReady.emit(text)

    def _show_failure(self, error: str) -> None:
        self._show(f"The diagnostics could not be gathered: {error}\n{self.task.error_details or ''}")

    def done(self, result: int) -> None:
        if is_active(self.task):
            self.task.cancel()  # its result is no longer wanted; the plugin waits for it on unload
        super().done(result)


def _report(host) -> str:
    """In the worker thread: every check, rendered; torch is not imported into QGIS."""
    from ..diagnostics import gather, render

    return render(gather(host, import_torch=False))
