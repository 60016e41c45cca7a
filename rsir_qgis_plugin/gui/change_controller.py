"""Compare dates, as calls: from the dialog's choice (and a box drawn on the map) to a ChangeTask, its
progress and Cancel in the message bar, and the places in the `rsir changes` layer and the changes panel.

Hot spots: the dialog's index and dates -> ChangeRequest (change_requests.py) -> ChangeTask (worker thread).
Search by a change: a box dragged with this controller's own box tool is the example (on the before or the
after raster, whichever holds the box's centre); Shift-drag adds another positive example, Ctrl-drag a
negative one, each re-running the search with every example so far; the examples are drawn in the
`rsir change examples` layer as they are dragged. One task at a time: a new request cancels the running one.
Save search (the changes panel) keeps the search by change shown as a standing search (core/standing_change.py)
in a task; the build's new hits then reach the results dock's badge like every saved search's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsRectangle
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, Qt, QTimer, pyqtSignal

from ..change_requests import ChangeOutcome, ChangeRequest
from ..core.change_params import ChangeParams
from ..core.examples import LabelledBox
from ..layers import crs_for_engine, query_raster, raster_file_path
from ..tasks import ChangeTask, InfoTask, is_active, log
from .change_dialog import CompareDatesDialog, DatesChoice
from .change_panel import ChangesPanel
from .change_results import (
    describe_changes,
    frame_change,
    remove_changes,
    show_change_examples,
    show_changes_on_map,
)
from .map_tool import BoxMapTool
from .task_progress import TaskProgress

MESSAGE_TITLE = "rsir"
MESSAGE_SECONDS = 10


class ChangeController(QObject):
    changesFinished = pyqtSignal(object)  # ChangeOutcome; tests and scripts wait on it
    changesEnded = pyqtSignal(str)  # "succeeded", "cancelled" or "failed"

    def __init__(self, iface, engine_ready: Callable[[], bool], default_index: Callable[[], Path]):
        super().__init__()
        self.iface = iface
        self.engine_ready = engine_ready
        self.default_index = default_index  # the results dock's index: where a search would look
        self.project = QgsProject.instance()
        self.dialog: CompareDatesDialog | None = None
        self.task: ChangeTask | None = None
        self.progress: TaskProgress | None = None
        self.outcome: ChangeOutcome | None = None
        self.examples: list[LabelledBox] = []  # the boxes of the search by change last started
        self.panel = ChangesPanel(iface.mainWindow())
        iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel)
        self.panel.hide()  # shown with the first result
        self.panel.placeActivated.connect(self.zoom_to_place)
        self.panel.clearRequested.connect(self.clear)
        self.panel.saveSearchRequested.connect(self.save_search)
        self._save_task: InfoTask | None = None
        self.map_tool = BoxMapTool(iface.mapCanvas())
        self.map_tool.boxDrawn.connect(self.search_by_box)
        self.map_tool.boxLabelled.connect(self.add_example)
        self.project.cleared.connect(self._on_project_cleared)

    # The dialog ------------------------------------------------------------------------------

    def open_dialog(self) -> CompareDatesDialog:
        if self.dialog is None or sip.isdeleted(self.dialog):
            self.dialog = CompareDatesDialog(self.project, self.default_index(), self.iface.mainWindow())
            self.dialog.hotspotsRequested.connect(self.hotspots)
            self.dialog.draw_button.toggled.connect(self._on_draw_toggled)
            self.map_tool.setButton(self.dialog.draw_button)  # QGIS unchecks it when another tool takes over
        else:
            self.dialog.refresh_layers()
            if not self.dialog.index_widget.filePath():
                self.dialog.index_widget.setFilePath(str(self.default_index()))
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def _on_draw_toggled(self, checked: bool) -> None:
        canvas = self.iface.mapCanvas()
        if checked:
            canvas.setMapTool(self.map_tool)
        elif canvas.mapTool() is self.map_tool:
            canvas.unsetMapTool(self.map_tool)

    # Requests --------------------------------------------------------------------------------

    def hotspots(self) -> ChangeTask | None:
        """The dialog's pair ranked by change, in a task; None with a message why not."""
        request = self._request(())
        return self._start(request) if request else None

    def search_by_box(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem) -> ChangeTask | None:
        """A box dragged around a change (in `box_crs`): the places whose change is like it."""
        example = self._example(box, box_crs, True)
        if example is None:
            return None
        request = self._request((example,))
        if request is None:
            return None
        self.examples = [example]
        self._draw_examples()
        return self._start(request)

    def add_example(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem,
                    positive: bool) -> ChangeTask | None:
        """Shift-drag (another change sought) or Ctrl-drag (a change not sought): search with every example."""
        if not any(example.positive for example in self.examples) and not positive:
            self._message("Drag a box around the change you seek first; Ctrl-drag then marks a change that "
                          "is not what you seek.", Qgis.MessageLevel.Info)
            return None
        example = self._example(box, box_crs, positive)
        request = self._request((*self.examples, example)) if example else None
        if request is None:
            return None
        self.examples.append(example)
        self._draw_examples()
        return self._start(request)

    def _draw_examples(self) -> None:
        canvas = self.iface.mapCanvas()
        show_change_examples(self.project, self.examples, canvas.mapSettings().destinationCrs(),
                             self.project.transformContext())

    def _choice(self) -> DatesChoice | None:
        if self.dialog is None or sip.isdeleted(self.dialog):
            self.open_dialog()
            self._message("Choose the index and the two dates, then search again.", Qgis.MessageLevel.Info)
            return None
        return self.dialog.choice()

    def _example(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem,
                 positive: bool) -> LabelledBox | None:
        choice = self._choice()
        if choice is None or choice.before is None or choice.after is None:
            if choice is not None:
                self._message("Choose the before and after raster layers first.")
            return None
        found = query_raster(box, box_crs, [choice.before, choice.after], self.project.transformContext())
        path = raster_file_path(found[0]) if found else None
        if path is None:
            self._message(f"The box is not on {choice.before.name()} or {choice.after.name()}: drag it around "
                          "a place that changed between them.")
            return None
        return LabelledBox(raster=path, bbox=(box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()),
                           crs=crs_for_engine(box_crs), positive=positive)

    def _request(self, examples: tuple) -> ChangeRequest | None:
        """What the dialog says as a request, or None with a message saying what to fix."""
        if not self.engine_ready():
            return None
        choice = self._choice()
        if choice is None:
            return None
        problem = dates_problem(choice)
        if problem:
            self._message(problem)
            return None
        canvas = self.iface.mapCanvas()
        return ChangeRequest(
            index_dir=choice.index_dir, before=(raster_file_path(choice.before),),
            after=(raster_file_path(choice.after),), params=ChangeParams(k=choice.k, hotspots=choice.hotspots),
            output_crs=canvas.mapSettings().destinationCrs(), transform_context=self.project.transformContext(),
            examples=examples, names=(choice.before.name(), choice.after.name()))

    # The task --------------------------------------------------------------------------------

    def _start(self, request: ChangeRequest) -> ChangeTask:
        self.cancel()  # the newest request is the one the user wants
        if self.progress is not None:
            self.progress.close()
        task = ChangeTask(request)
        task.succeeded.connect(lambda outcome: self._on_succeeded(task, outcome))
        task.failed.connect(lambda error: self._on_failed(task, error))
        task.cancelled.connect(lambda: self._on_cancelled(task))
        self.task = task
        self.progress = TaskProgress(self.iface.messageBar(), task, request.describe().capitalize())
        self.panel.show()
        self.panel.raise_()
        self.panel.set_status(request.describe().capitalize() + "...")
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if is_active(self.task):
            self.task.cancel()

    def _end(self, task: ChangeTask) -> bool:
        """Whether `task` is the current one (a replaced task's end changes nothing); closes its progress."""
        if task is not self.task:
            return False
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        self.task = None
        return True

    def _on_succeeded(self, task: ChangeTask, outcome: ChangeOutcome) -> None:
        if not self._end(task):
            return
        self.outcome = outcome
        show_changes_on_map(self.project, outcome)
        self.panel.show_changes(outcome)
        line = describe_changes(outcome)
        task.setDescription(f"rsir: {line}")  # what QGIS 3.22 (no QgsTask.Silent) announces
        for pair in outcome.result.pairs:
            log(pair.describe())
        notes = list(outcome.result.notes)
        if outcome.result.all_excluded:
            notes.append("every place compared overlaps an example")
        level = Qgis.MessageLevel.Success if outcome.result.hits else Qgis.MessageLevel.Info
        self._later(line + ("" if not notes else " " + "; ".join(notes[:3])), level)
        self.changesFinished.emit(outcome)
        self.changesEnded.emit("succeeded")

    def _on_failed(self, task: ChangeTask, error: str) -> None:
        if not self._end(task):
            return
        self._later(f"Compare dates failed: {error}", Qgis.MessageLevel.Critical)
        self.changesEnded.emit("failed")

    def _on_cancelled(self, task: ChangeTask) -> None:
        if not self._end(task):
            return
        self.panel.set_status("Cancelled.")
        self.changesEnded.emit("cancelled")

    # The panel's actions ---------------------------------------------------------------------

    def zoom_to_place(self, rank: int) -> None:
        frame_change(self.iface.mapCanvas(), self.project, rank)

    def clear(self) -> None:
        remove_changes(self.project)
        self.outcome = None
        self.examples = []
        self.panel.clear_places()

    def save_search(self, name: str) -> InfoTask | None:
        """Keep the search by change shown as a standing search named `name`, in a task; None with a message
        when there is none."""
        outcome = self.outcome
        if outcome is None or outcome.result.scorer is None:
            self._message("Search by a change first (drag a box around it): hot spots cannot be saved.",
                          Qgis.MessageLevel.Info)
            return None
        from ..core.standing_change import save_change_search

        request = outcome.request
        task = InfoTask(f"rsir: saving the search '{name}'", save_change_search, request.index_dir, name,
                        outcome.result, request.params)
        task.succeeded.connect(lambda path: self._message(
            f"Search saved as '{name}': each index build now shows the changes like it in new pairs of dates "
            f"({path})", Qgis.MessageLevel.Success))
        task.failed.connect(lambda error: self._message(f"Saving the search failed: {error}",
                                                        Qgis.MessageLevel.Critical))
        self._save_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def _on_project_cleared(self) -> None:
        """Another project: the places belonged to the old one (its layer went with it)."""
        self.cancel()
        self.outcome = None
        self.examples = []
        self.panel.clear_places()

    # Lifetime ---------------------------------------------------------------------------------

    def running_tasks(self) -> list:
        return [self.task] if is_active(self.task) else []

    def release(self) -> None:
        """Take everything this controller put into QGIS back out (plugin unload; tasks already stopped)."""
        self.project.cleared.disconnect(self._on_project_cleared)
        canvas = self.iface.mapCanvas()
        if canvas.mapTool() is self.map_tool:
            canvas.unsetMapTool(self.map_tool)
        self.map_tool.release()
        self.map_tool.deleteLater()
        if self.progress is not None:
            self.progress.close()
        if self.dialog is not None and not sip.isdeleted(self.dialog):
            self.dialog.close()
            self.dialog.deleteLater()
        self.iface.removeDockWidget(self.panel)
        self.panel.deleteLater()

    # Messages ---------------------------------------------------------------------------------

    def _later(self, text: str, level: Qgis.MessageLevel) -> None:
        """After QGIS's own task notification (QGIS 3.22), so that rsir's line is the one on top."""
        self.panel.set_status(text)
        QTimer.singleShot(0, lambda: self._message(text, level))

    def _message(self, text: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Warning) -> None:
        self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level, MESSAGE_SECONDS)
        if not sip.isdeleted(self.panel):
            self.panel.set_status(text)
        log(text, level)


def dates_problem(choice: DatesChoice) -> str:
    """What keeps the dialog's choice from being compared, in a line; '' when nothing does."""
    if choice.index_dir is None or not (choice.index_dir / "manifest.json").is_file():
        return (f"No index in {choice.index_dir or '(no folder chosen)'}: index the before raster first "
                "(Raster > rsir > Build index...).")
    if choice.before is None or choice.after is None:
        return "Choose the before and after raster layers."
    if choice.before.id() == choice.after.id():
        return "Choose two different layers: the before and the after date."
    for layer in (choice.before, choice.after):
        if raster_file_path(layer) is None:
            return f"'{layer.name()}' is not a raster stored in a local file."
    return ""
