"""QgsTask wrappers: each runs one engine call in QGIS's worker threads and reports back.

Only the wrapping lives here: the requests and outcomes are search_requests.py's and change_requests.py's,
thumbnails are read by thumbnail_pixels.py and change_pixels.py, and the pip installer is
dependencies.install_packages (all plain Python).

`run()` executes in a worker thread and touches no widget; `finished()` runs on the UI thread
and only emits `succeeded`, `cancelled` or `failed`, which the controllers turn into layers and
messages. The engine is imported inside `work()`, so loading the plugin never imports
onnxruntime or faiss.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt import sip
from qgis.PyQt.QtCore import pyqtSignal

from .change_requests import ChangeOutcome, ChangeRequest, change_outcome
from .core.errors import Cancelled, RsirError
from .core.params import BuildParams
from .search_requests import FeedbackRequest, SearchOutcome, SearchRequest, search_outcome

LOG_TAG = "rsir"
LOG_EVERY_S = 10.0  # progress lines in the log panel; the task manager shows every percent
# rsir reports every outcome itself; QGIS's own "Task complete"/"Task failed" notifications would
# cover those messages. QgsTask.Silent is newer than QGIS 3.22 (see EngineTask.run for 3.22).
TASK_FLAGS = (QgsTask.Flag.CanCancel | QgsTask.Flag.Silent if hasattr(QgsTask.Flag, "Silent")
              else QgsTask.Flag.CanCancel)


def log(message: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
    """QgsMessageLog is thread-safe: tasks log from their worker thread."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


def is_active(task: QgsTask | None) -> bool:
    """True while a task is queued or running (the task manager deletes finished ones)."""
    if task is None or sip.isdeleted(task):
        return False
    return task.status() not in (QgsTask.TaskStatus.Complete, QgsTask.TaskStatus.Terminated)


def start_task(task: QgsTask, when_over) -> None:
    """Queue the task in QGIS's task manager; `when_over()` runs on the UI thread once it completes or is
    terminated (failed or cancelled)."""
    task.taskCompleted.connect(when_over)
    task.taskTerminated.connect(when_over)
    QgsApplication.taskManager().addTask(task)


class EngineTask(QgsTask):
    """One cancellable engine call; subclasses implement `work()` and return its result."""

    succeeded = pyqtSignal(object)
    cancelled = pyqtSignal()
    failed = pyqtSignal(str)

    def __init__(self, description: str):
        super().__init__(description, TASK_FLAGS)
        self.result_value: Any = None
        self.error: str | None = None  # one line for a message bar
        self.error_details: str | None = None  # the whole message, or the traceback of a bug
        self.was_cancelled = False

    def work(self) -> Any:
        raise NotImplementedError

    def run(self) -> bool:
        """True unless the work failed: a cancel that stopped cleanly is no failure.

        QGIS announces a task that returns False as "Task failed" (QGIS 3.22, which has no
        QgsTask.Silent: QgisApp::onTaskCompleteShowNotify, a desktop notification or, without one, a
        message-bar line, for every task that ran 5 s or more) and one that returns True as "Task
        complete", each with the task's description; a cancelled build retitles itself "rsir: build
        cancelled; the previous index is unchanged" (gui/build_controller.py), so the pair reads true."""
        try:
            self.result_value = self.work()
        except Cancelled:
            self.was_cancelled = True
            return True
        except RsirError as exc:  # a problem the user can act on: its message says what to do
            self.error = self.error_details = str(exc)
            return False
        except Exception:  # noqa: BLE001 - anything else is a bug: keep the traceback for the report
            self.error_details = traceback.format_exc()
            log(f"{self.description()} failed:\n{self.error_details}", Qgis.MessageLevel.Critical)
            self.error = self.error_details.strip().splitlines()[-1]
            return False
        if self.isCanceled():
            self.was_cancelled = True
        return True

    def finished(self, ok: bool) -> None:  # UI thread
        if self.was_cancelled or (not ok and self.isCanceled()):  # also a task cancelled before it ran
            self.cancelled.emit()
        elif ok:
            self.succeeded.emit(self.result_value)
        else:
            self.failed.emit(self.error or "stopped")


class BuildIndexTask(EngineTask):
    """build_index() with the task's progress bar and cancel button wired to its callbacks."""

    progressMessage = pyqtSignal(str)

    def __init__(self, params: BuildParams):
        super().__init__(f"rsir: indexing {len(params.rasters)} raster(s)")
        self.params = params
        self._last_log = 0.0

    def work(self):
        from .core.builder import build_index

        log(f"Building index {self.params.index_dir} from {len(self.params.rasters)} raster(s)")
        return build_index(self.params, progress=self._progress, is_cancelled=self.isCanceled)

    def run(self) -> bool:
        ok = super().run()
        if self.was_cancelled and self.result_value is not None:
            # build_index returned, so the new index is committed: a cancel that came after its
            # last check changed nothing, and reporting "cancelled, previous index kept" would be false.
            self.was_cancelled = False
        return ok

    def _progress(self, percent: float, message: str) -> None:
        self.setProgress(max(0.0, min(100.0, float(percent))))
        self.progressMessage.emit(message)
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log(f"{percent:5.1f} % {message}")


class SearchTask(EngineTask):
    """search_box(), then the hit polygons as features in the map CRS and their thumbnails."""

    def __init__(self, request: SearchRequest):
        super().__init__(f"rsir: searching {request.index_dir.name} for {request.raster_name}")
        self.request = request

    def work(self) -> SearchOutcome:
        from .core.search import search_box

        req = self.request
        result = search_box(req.index_dir, req.raster_path, req.box, req.box_crs, req.params,
                            is_cancelled=self.isCanceled)
        return search_outcome(result, req.raster_name, req.output_crs, req.transform_context, req.thumbnails,
                              self.isCanceled, query_raster=req.raster_path)


class FeedbackSearchTask(EngineTask):
    """The labels as Feedback, search_feedback(), then the hits as features in the map CRS and thumbnails."""

    def __init__(self, request: FeedbackRequest):
        super().__init__(f"rsir: refining the search in {request.index_dir.name}")
        self.request = request

    def work(self) -> SearchOutcome:
        from .core.feedback import search_feedback
        from .labels.convert import feedback_from_features

        req = self.request
        read = feedback_from_features(req.labels.getFeatures(), req.labels_crs, req.rasters,
                                      req.transform_context, req.labels_dir)
        if read.positives == 0:
            why = f" ({'; '.join(read.skipped[:3])})" if read.skipped else ""
            raise RsirError("no positive label to refine with: mark a hit with thumbs up or Shift-drag a "
                            f"box on the map{why}")
        result = search_feedback(req.index_dir, read.feedback, req.params, is_cancelled=self.isCanceled)
        name = f"{read.positives} positive and {read.negatives} negative label(s)"
        return search_outcome(result, name, req.output_crs, req.transform_context, req.thumbnails,
                              self.isCanceled, feedback=read.feedback, notes=read.skipped)


class ChangeTask(EngineTask):
    """change_hotspots() or, with example boxes, search_change(); then the places as features in the map
    CRS and their before/after thumbnails. Progress as BuildIndexTask's (a percentage and a message)."""

    progressMessage = pyqtSignal(str)

    def __init__(self, request: ChangeRequest):
        super().__init__(f"rsir: {request.describe()}")
        self.request = request

    def work(self) -> ChangeOutcome:
        from .core.change_rank import change_hotspots, search_change

        req = self.request
        log(f"{req.describe()} in {req.index_dir}")
        if req.examples:
            result = search_change(req.index_dir, req.before, req.after, list(req.examples), req.params,
                                   self._progress, self.isCanceled)
        else:
            result = change_hotspots(req.index_dir, req.before, req.after, req.params, self._progress,
                                     self.isCanceled)
        return change_outcome(result, req, self.isCanceled)

    def _progress(self, percent: float, message: str) -> None:
        self.setProgress(max(0.0, min(100.0, float(percent))))
        self.progressMessage.emit(message)


class InfoTask(EngineTask):
    """A short engine read (model metadata, devices, index summary) kept off the UI thread."""

    def __init__(self, description: str, function, *args):
        super().__init__(description)
        self._function = function
        self._args = args

    def work(self):
        return self._function(*self._args)


class InstallPackagesTask(EngineTask):
    """dependencies.install_packages() (pip with QGIS's own Python, into the plugin's private folder),
    its output in the rsir log panel and the task's Cancel button stopping pip."""

    def __init__(self, packages: list[str], target: Path):
        super().__init__(f"rsir: installing {', '.join(packages)}")
        self.packages = packages
        self.target = target

    def work(self) -> str:
        from .dependencies import install_packages

        return install_packages(self.packages, self.target, log, self.isCanceled)
