"""From the build dialog to a running BuildIndexTask, its progress in the message bar and its outcome.

The outcome is one short line in the message bar with a "Details" button for the whole text,
pushed after QGIS has shown its own task notification (QGIS 3.22 has no QgsTask.Silent), so
rsir's line is the one on top.
"""
from __future__ import annotations

from typing import Callable

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import QDialog

from ..core.params import BuildParams
from ..tasks import BuildIndexTask, is_active, log
from .build_dialog import BuildIndexDialog
from .task_progress import TaskProgress
from .text_viewer import DetailsWindow

MESSAGE_TITLE = "rsir"
LINE_CHARS = 160  # longer first lines of an error are cut; Details has the whole text
SUCCESS_SECONDS = 15
CANCELLED_TEXT = ("Build cancelled; the previous index is unchanged "
                  "(rasters that finished are reused next time).")


def summary_line(summary) -> str:
    """One line for the message bar: 'rsir: 993 tiles indexed in 12 s, 1 raster failed'.

    The one short form of a BuildSummary (its details are BuildSummary.describe(), which the CLI prints).

    Works with summaries that have no `rasters_kept` (failed rasters that keep their previous tiles).
    """
    if summary.tiles_indexed:
        text = f"{summary.tiles_indexed} tiles indexed in {_duration(summary.seconds)}"
        if summary.tiles_total != summary.tiles_indexed:
            text += f" ({summary.tiles_total} in the index)"
    else:
        text = f"no new tiles to index; the index holds {summary.tiles_total} tiles"
    if summary.rasters_removed:
        text += f", {_count(summary.rasters_removed, 'raster')} removed"
    if summary.failed:
        text += f", {_count(len(summary.failed), 'raster')} failed"
        kept = getattr(summary, "rasters_kept", 0)
        if kept:
            text += f" ({kept} kept {'its' if kept == 1 else 'their'} previous tiles)"
    standing = getattr(summary, "standing", [])
    found = [report for report in standing if not report.problem]
    if found:  # "3 new hits for 'solar farms'"
        text += ", " + ", ".join(report.headline for report in found)
    if len(found) < len(standing):
        skipped = len(standing) - len(found)
        text += f", {skipped} saved search{'' if skipped == 1 else 'es'} skipped"
    return text


def error_line(error: str) -> str:
    first = (error.strip().splitlines() or ["stopped"])[0]
    return first if len(first) <= LINE_CHARS else first[:LINE_CHARS - 3].rstrip() + "..."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


class BuildController(QObject):
    """One build at a time; emits `indexBuilt(index_dir)` when an index is ready to search."""

    indexBuilt = pyqtSignal(str)
    newHits = pyqtSignal(object)  # the build's StandingReports (core/standing.py): the dock's badge
    buildEnded = pyqtSignal(str)  # "succeeded", "cancelled" or "failed", once its message is shown

    def __init__(self, iface, engine_ready: Callable[[], bool]):
        super().__init__()
        self.iface = iface
        self.engine_ready = engine_ready
        self.task: BuildIndexTask | None = None
        self.params: BuildParams | None = None
        self.summary = None
        self.progress: TaskProgress | None = None
        self.outcome_item = None  # the message-bar item of the last outcome
        self.details = DetailsWindow("rsir: index build", iface.mainWindow())

    def open_dialog(self) -> None:
        if not self.engine_ready():
            return
        if is_active(self.task):
            self._push("An index is already being built; cancel it first (task bar or message bar).",
                       Qgis.MessageLevel.Warning, 8)
            return
        dialog = BuildIndexDialog(QgsProject.instance(), self.iface.mainWindow())
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.build_params() is not None:
            self.start(dialog.build_params())
        dialog.deleteLater()

    def start(self, params: BuildParams) -> BuildIndexTask | None:
        if is_active(self.task):
            return None
        task = BuildIndexTask(params)
        task.succeeded.connect(self._on_succeeded)
        task.cancelled.connect(self._on_cancelled)
        task.failed.connect(self._on_failed)
        self.task, self.params = task, params
        self.progress = TaskProgress(self.iface.messageBar(), task,
                                     f"Indexing {_count(len(task.params.rasters), 'raster')}")
        self.progress.item.setToolTip(f"Index folder: {task.params.index_dir}")
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if is_active(self.task):
            self.task.cancel()

    # Outcomes: run inside the task's finished(), before the task manager announces the end --------

    def _on_succeeded(self, summary) -> None:
        self.summary = summary
        line = summary_line(summary)
        self._retitle(f"rsir: {line}")
        level = Qgis.MessageLevel.Warning if summary.failed else Qgis.MessageLevel.Success
        index_dir = str(self.params.index_dir) if self.params else summary.index_dir
        self._later(line, level, 0 if summary.failed else SUCCESS_SECONDS, summary.describe(), "succeeded",
                    index_dir)

    def _on_cancelled(self) -> None:
        self._retitle("rsir: build cancelled; the previous index is unchanged")
        self._later(CANCELLED_TEXT, Qgis.MessageLevel.Info, 10, None, "cancelled")

    def _on_failed(self, error: str) -> None:
        details = (getattr(self.task, "error_details", None) if self.task and not sip.isdeleted(self.task)
                   else None) or error
        self._retitle("rsir: index build failed")
        self._later(f"Build failed: {error_line(error)}", Qgis.MessageLevel.Critical, 0, details, "failed")

    def _retitle(self, text: str) -> None:
        """Where QgsTask.Silent is missing (3.22), QGIS announces a finished task by its description."""
        if self.task is not None and not sip.isdeleted(self.task):
            self.task.setDescription(text)

    def _later(self, line: str, level, duration: int, details: str | None, outcome: str,
               index_dir: str | None = None) -> None:
        QTimer.singleShot(0, lambda: self._finish(line, level, duration, details, outcome, index_dir))

    def _finish(self, line: str, level, duration: int, details: str | None, outcome: str,
                index_dir: str | None) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        self.task = None
        log(details or line, level)
        self.outcome_item = self._push(line, level, duration, details)
        if index_dir is not None:
            self.indexBuilt.emit(index_dir)
            if self.summary is not None:
                self.newHits.emit(list(getattr(self.summary, "standing", [])))
        self.buildEnded.emit(outcome)

    # Message bar -------------------------------------------------------------------------

    def _push(self, line: str, level, duration: int, details: str | None = None):
        bar = self.iface.messageBar()
        item = bar.createMessage(MESSAGE_TITLE, line)
        if details and details.strip() != line.strip():
            self.details.add_button(item, details, "The whole report (also in the rsir tab of the log panel)")
        return bar.pushWidget(item, level, duration)

