"""The search dock's and the map tool's actions, as calls: from a box drawn on the map to hits on the
map and in the dock.

box drawn (map CRS) -> the raster under it -> SearchRequest (search_requests.py) -> SearchTask
(worker thread) -> `rsir hits` / `rsir query` layers (results.py) and the dock's list. One search
runs at a time: a new box (or Refine) cancels the running one.

Feedback: thumbs up/down on a hit and Shift-/Ctrl-drags on the map add features to the `rsir
labels` layer (labels_controller.py); Refine reads that layer in a FeedbackSearchTask and shows
its hits like a box search's.

Standing searches: "Save search..." keeps the current search in the index folder (core/standing.py, in
a task); after a build, the dock's badge counts the new hits it found, and clicking it loads each saved
search's searches/<name>.new.gpkg as a "New hits" layer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..labels.edit import count_labels
from ..layers import crs_for_engine
from ..search_requests import SearchOutcome, box_request, feedback_request, raster_under_box
from ..settings import project_index_dir, remember_index_dir
from ..tasks import FeedbackSearchTask, InfoTask, SearchTask, is_active, log
from .dock import ResultsDock
from .labels_controller import LabelsController
from .results import describe_outcome, frame_hit, remove_from_map, show_on_map

MESSAGE_TITLE = "rsir"


class SearchController(QObject):
    """Owns the search task, the result layers and the dock's list of hits; `labels` owns the
    dock's relevance feedback."""

    searchFinished = pyqtSignal(object)  # SearchOutcome; tests and scripts wait on it

    def __init__(self, iface, dock: ResultsDock, engine_ready: Callable[[], bool]):
        super().__init__()
        self.iface = iface
        self.dock = dock
        self.engine_ready = engine_ready
        self.project = QgsProject.instance()
        self.outcome: SearchOutcome | None = None
        self._task: SearchTask | None = None
        self._info_task: InfoTask | None = None
        self._save_task: InfoTask | None = None
        self._save_search_task: InfoTask | None = None
        self._params = None  # the SearchParams of the search shown (what saving it keeps)
        self.standing: list = []  # the last build's StandingReports (core/standing.py)
        self.new_hit_layers: list[QgsVectorLayer] = []
        dock.indexDirChanged.connect(self.set_index_dir)
        dock.hitActivated.connect(self.zoom_to_hit)
        dock.clearRequested.connect(self.clear)
        dock.saveRequested.connect(self.save)
        dock.refineRequested.connect(self.refine)
        dock.saveSearchRequested.connect(self.save_search)
        dock.newHitsRequested.connect(self.load_new_hits)
        self.labels = LabelsController(iface, dock, self._warn)
        # Saving a new project moves the default index next to the project file (QgsProject.write(path)
        # emits projectSaved but not fileNameChanged).
        self._project_signals = (self.project.fileNameChanged, self.project.projectSaved)
        for signal in self._project_signals:
            signal.connect(self._on_project_read)
        # Project > New, Close and Open clear the project (and Open then reads one): the dock follows.
        self._replaced_signals = (self.project.cleared, self.project.readProject)
        for signal in self._replaced_signals:
            signal.connect(self._on_project_replaced)
        self._on_project_read()

    # Index -------------------------------------------------------------------------------

    def index_dir(self) -> Path:
        return Path(self.dock.index_dir()) if self.dock.index_dir() else project_index_dir(self.project)

    def set_index_dir(self, path: str) -> None:
        if path:
            remember_index_dir(path, self.project)
        self.refresh_index_info()

    def show_index(self, path: str | Path) -> None:
        """Called after a build: search the index just built (a 'no index' warning no longer holds)."""
        self.dock.set_index_dir(path)
        remember_index_dir(path, self.project)
        self.refresh_index_info()
        self.dock.set_status(describe_outcome(self.outcome) if self.outcome is not None else "")

    def refresh_index_info(self) -> None:
        index_dir = self.index_dir()
        if not (index_dir / "manifest.json").is_file():
            self.dock.set_index_info("No index here yet: build one with Raster > rsir > Build index...")
            return
        if not self.engine_ready():
            return
        self.dock.set_index_info("Reading index...")
        task = InfoTask(f"rsir: reading index {index_dir.name}", _read_index_info, index_dir)
        task.succeeded.connect(lambda info: self.dock.set_index_info(summarize_index(info), info.describe()))
        task.failed.connect(lambda error: self.dock.set_index_info(f"Index unusable: {error}"))
        self._info_task = task
        QgsApplication.taskManager().addTask(task)

    def _on_project_read(self, *_args) -> None:
        self.dock.set_index_dir(project_index_dir(self.project))
        self.refresh_index_info()
        self.labels.refresh()

    def _on_project_replaced(self, *_args) -> None:
        """Another project (or none): the hits, their thumbs and the status line belonged to the old one."""
        if self._task is not None:
            self._task.cancel()  # its hits would land in the new project
            self._task = None
        self.outcome = None
        self.labels.show_result(None)
        self.dock.clear_hits()
        self.dock.set_status("")
        self._on_project_read()

    # Search ------------------------------------------------------------------------------

    def search(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem) -> SearchTask | None:
        """Start a search for the box (in `box_crs`); returns the task, or None with a message why not."""
        index_dir = self._index_to_search()
        if index_dir is None:
            return None
        found = raster_under_box(box, box_crs, self.project)
        if found is None:
            self._warn("The box is not over a file-based raster layer of the project.")
            return None
        request = box_request(box, box_crs, *found, index_dir, self.dock.search_settings().to_params(),
                              self._map_crs(), self.project.transformContext())
        return self._start(SearchTask(request), f"Searching with a box on {request.raster_name}...")

    def _index_to_search(self) -> Path | None:
        """The index to search, or None with a message why not (missing packages, or no index there)."""
        if not self.engine_ready():
            return None
        index_dir = self.index_dir()
        if not (index_dir / "manifest.json").is_file():
            self._warn(f"No index in {index_dir}: build one first (Raster > rsir > Build index...).")
            return None
        return index_dir

    def _start(self, task, status: str):
        if self._task is not None:
            self._task.cancel()  # the newest request is the one the user wants
        task.succeeded.connect(self._on_found)
        task.failed.connect(lambda error: self._on_failed(task, error))
        task.cancelled.connect(lambda: self._on_cancelled(task))
        self._task = task
        self.dock.set_status(status)
        QgsApplication.taskManager().addTask(task)
        return task

    def _on_found(self, outcome: SearchOutcome) -> None:
        self._params = self._task.request.params if self._task is not None else None
        self._task = None
        self.outcome = outcome
        self.labels.show_result(outcome.result)
        show_on_map(self.project, outcome)
        self.dock.show_hits(outcome, self.labels.hit_labels())
        self.dock.set_status(describe_outcome(outcome))
        if outcome.notes:
            self._warn(f"{len(outcome.notes)} label(s) left out: " + "; ".join(outcome.notes[:5]))
        if not outcome.result.hits:
            self._warn("No hits: lower the minimum score, or index more rasters.", Qgis.MessageLevel.Info)
        self.searchFinished.emit(outcome)

    def _on_failed(self, task, error: str) -> None:
        if task is self._task:
            self._task = None
        self.dock.set_status("Search failed.")
        self._warn(f"Search failed: {error}", Qgis.MessageLevel.Critical)

    def _on_cancelled(self, task) -> None:
        if task is self._task:
            self._task = None
            self.dock.set_status("Search cancelled.")

    # Dock actions ------------------------------------------------------------------------

    def zoom_to_hit(self, rank: int) -> None:
        frame_hit(self.iface.mapCanvas(), self.project, rank)

    def clear(self) -> None:
        remove_from_map(self.project)
        self.outcome = None
        self.labels.show_result(None)
        self.dock.clear_hits()
        self.dock.set_status("")

    def save(self, path: str) -> None:
        if self.outcome is None:
            return
        from ..core.hits_io import write_hits

        crs = crs_for_engine(self.outcome.crs)
        task = InfoTask(f"rsir: saving hits to {Path(path).name}", write_hits, self.outcome.result,
                        Path(path), crs)
        task.succeeded.connect(
            lambda written: self._warn(f"Hits saved to {written}", Qgis.MessageLevel.Success))
        task.failed.connect(
            lambda error: self._warn(f"Saving hits failed: {error}", Qgis.MessageLevel.Critical))
        self._save_task = task
        QgsApplication.taskManager().addTask(task)

    # Standing searches ---------------------------------------------------------------------

    def save_search(self, name: str) -> InfoTask | None:
        """Keep the search shown as a standing search named `name`, in a task; None with a message why not."""
        if self.outcome is None or self._index_to_search() is None:
            return None
        from ..core.standing import save_search

        params = self._params or self.dock.search_settings().to_params()
        task = InfoTask(f"rsir: saving the search '{name}'", save_search, self.index_dir(), name,
                        self.outcome.result, params)
        task.succeeded.connect(lambda path: self._warn(
            f"Search saved as '{name}': each index build now shows its new hits here ({path})",
            Qgis.MessageLevel.Success))
        task.failed.connect(lambda error: self._warn(f"Saving the search failed: {error}",
                                                     Qgis.MessageLevel.Critical))
        self._save_search_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def show_new_hits(self, reports: list) -> None:
        """After a build: the badge counts the saved searches' new hits; skipped searches are warned of."""
        self.standing = list(reports)
        count = sum(report.new_hits for report in self.standing)
        self.dock.set_new_hits(count, "\n".join(report.describe() for report in self.standing))
        problems = [report.describe() for report in self.standing if report.problem]
        if problems:
            self._warn("; ".join(problems[:3]))

    def load_new_hits(self) -> list[QgsVectorLayer]:
        """Each saved search's new hits as a layer 'New hits: <name>'; the badge is then cleared."""
        layers = []
        for report in self.standing:
            if not report.path or not report.new_hits:
                continue
            layer = QgsVectorLayer(f"{report.path}|layername={report.layer}", f"New hits: {report.name}", "ogr")
            if not layer.isValid():
                self._warn(f"The new hits of '{report.name}' could not be read from {report.path}")
                continue
            self.project.addMapLayer(layer)
            layers.append(layer)
        self.new_hit_layers = layers
        self.dock.set_new_hits(0)
        return layers

    # Relevance feedback -------------------------------------------------------------------

    def label_box(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, positive: bool) -> bool:
        """A Shift-drag (positive) or Ctrl-drag (negative) on the map: a label on the raster under it."""
        found = raster_under_box(box, box_crs, self.project)
        if found is None:
            self._warn("The box is not over a file-based raster layer of the project: no label added.")
            return False
        self.labels.label_box(box, box_crs, found[0], positive)
        return True

    def refine(self) -> FeedbackSearchTask | None:
        """Search again with every label of the labels layer, in a task; None with a message why not."""
        index_dir = self._index_to_search()
        if index_dir is None:
            return None
        layer = self.labels.layer()
        if layer is None or count_labels(layer).positive == 0:
            self._warn("Nothing to refine with: mark a hit with thumbs up, or Shift-drag a positive box "
                       "on the map, first.")
            return None
        request = feedback_request(layer, self.project, index_dir, self.dock.search_settings().to_params(),
                                   self._map_crs())
        counts = count_labels(layer)
        return self._start(FeedbackSearchTask(request), f"Refining with {counts.describe()} label(s)...")

    # Lifetime ----------------------------------------------------------------------------

    def running_tasks(self) -> list:
        tasks = (self._task, self._info_task, self._save_task, self._save_search_task)
        return [t for t in tasks if is_active(t)] + self.labels.running_tasks()

    def disconnect_project(self) -> None:
        for signal in self._project_signals:
            signal.disconnect(self._on_project_read)
        for signal in self._replaced_signals:
            signal.disconnect(self._on_project_replaced)
        self.labels.disconnect_project()

    def _map_crs(self) -> QgsCoordinateReferenceSystem:
        return self.iface.mapCanvas().mapSettings().destinationCrs()

    def _warn(self, text: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Warning) -> None:
        """Message bar, log, and the dock's status line (the dock is where the user is looking)."""
        self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level, 8)
        self.dock.set_status(text)
        log(text, level)


def summarize_index(info) -> str:
    """Two short lines for the dock; the full description goes in the tooltip."""
    return (f"{info.tile_count} tiles from {len(info.rasters)} raster(s), {info.size_bytes / 1e6:.1f} MB\n"
            f"model {info.model.get('name', '?')}, built {info.built_at[:16].replace('T', ' ')}")


def _read_index_info(index_dir: Path):
    """In the worker thread: the engine's modules are imported there too, not on the UI thread."""
    from ..core.store import read_index_info

    return read_index_info(index_dir)
