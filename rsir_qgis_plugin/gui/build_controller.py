"""From the build dialog to a running BuildIndexTask, its progress in the message bar and its summary."""
from __future__ import annotations

from typing import Callable

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtWidgets import QDialog, QLabel, QProgressBar, QPushButton

from ..core.params import BuildParams
from ..tasks import BuildIndexTask, is_active, log
from .build_dialog import BuildIndexDialog

MESSAGE_TITLE = "rsir"


class BuildController(QObject):
    """One build at a time; emits `indexBuilt(index_dir)` when an index is ready to search."""

    indexBuilt = pyqtSignal(str)
    buildEnded = pyqtSignal(str)  # "succeeded", "cancelled" or "failed"

    def __init__(self, iface, engine_ready: Callable[[], bool]):
        super().__init__()
        self.iface = iface
        self.engine_ready = engine_ready
        self.task: BuildIndexTask | None = None
        self.summary = None
        self._bar_item = None

    def open_dialog(self) -> None:
        if not self.engine_ready():
            return
        if is_active(self.task):
            self._message("An index is already being built; cancel it first (task bar or message bar).",
                          Qgis.Warning)
            return
        dialog = BuildIndexDialog(QgsProject.instance(), self.iface.mainWindow())
        if dialog.exec_() == QDialog.Accepted and dialog.build_params() is not None:
            self.start(dialog.build_params())
        dialog.deleteLater()

    def start(self, params: BuildParams) -> BuildIndexTask | None:
        if is_active(self.task):
            return None
        task = BuildIndexTask(params)
        task.succeeded.connect(self._on_succeeded)
        task.cancelled.connect(self._on_cancelled)
        task.failed.connect(self._on_failed)
        self.task = task
        self._show_progress(task)
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if is_active(self.task):
            self.task.cancel()

    # Progress in the message bar ---------------------------------------------------------

    def _show_progress(self, task: BuildIndexTask) -> None:
        bar = self.iface.messageBar()
        item = bar.createMessage(MESSAGE_TITLE, f"Indexing {len(task.params.rasters)} raster(s)")
        item.setToolTip(f"Index folder: {task.params.index_dir}")
        progress = QProgressBar(item)
        progress.setRange(0, 100)
        progress.setMaximumWidth(220)
        status = QLabel("", item)
        cancel = QPushButton("Cancel", item)
        cancel.clicked.connect(task.cancel)
        for widget in (progress, status, cancel):
            item.layout().addWidget(widget)
        task.progressChanged.connect(lambda value: progress.setValue(int(value)))
        task.progressMessage.connect(lambda text: status.setText(text[:80]))
        self._bar_item = bar.pushWidget(item, Qgis.Info)

    def _hide_progress(self) -> None:
        item, self._bar_item = self._bar_item, None
        if item is not None and not sip.isdeleted(item):
            self.iface.messageBar().popWidget(item)

    # Outcomes ----------------------------------------------------------------------------

    def _on_succeeded(self, summary) -> None:
        self._hide_progress()
        self.summary = summary
        text = summary.describe()
        if summary.failed:
            details = "\n".join(f"{path}: {reason}" for path, reason in summary.failed)
            log(f"{text}\nRasters not indexed:\n{details}", Qgis.Warning)
            self.iface.messageBar().pushMessage(
                MESSAGE_TITLE, text.splitlines()[0], details, Qgis.Warning, 0)
        else:
            self._message(text, Qgis.Success, 15)
        self.indexBuilt.emit(str(self.task.params.index_dir) if self.task else summary.index_dir)
        self.task = None
        self.buildEnded.emit("succeeded")

    def _on_cancelled(self) -> None:
        self._hide_progress()
        self.task = None
        self._message("Index build cancelled: the previous index is still in use, and rasters that "
                      "finished are reused by the next build.", Qgis.Info, 10)
        self.buildEnded.emit("cancelled")

    def _on_failed(self, error: str) -> None:
        self._hide_progress()
        self.task = None
        self._message(f"Index build failed: {error}", Qgis.Critical, 0)
        self.buildEnded.emit("failed")

    def _message(self, text: str, level: Qgis.MessageLevel, duration: int = 8) -> None:
        self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level, duration)
        log(text, level)
