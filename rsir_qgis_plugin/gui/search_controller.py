"""From a box drawn on the map to hits on the map and in the dock.

box drawn (map CRS) -> the raster under it -> SearchRequest -> SearchTask (worker thread)
-> `rsir hits` / `rsir query` layers and the dock's list. One search runs at a time: a new
box cancels the running one.
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

from ..settings import project_index_dir, remember_index_dir
from ..tasks import InfoTask, SearchOutcome, SearchRequest, SearchTask, is_active, log
from .dock import ResultsDock
from .layers import (
    add_on_top,
    crs_for_engine,
    make_hits_layer,
    make_query_layer,
    owned_layer,
    project_rasters,
    query_raster,
    raster_file_path,
    replace_features,
    style_hits_by_score,
)

MESSAGE_TITLE = "rsir"


class SearchController(QObject):
    """Owns the search task, the result layers and the dock's content."""

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
        dock.indexDirChanged.connect(self.set_index_dir)
        dock.hitActivated.connect(self.zoom_to_hit)
        dock.clearRequested.connect(self.clear)
        dock.saveRequested.connect(self.save)
        # Saving a new project moves the default index next to the project file (QgsProject.write(path)
        # emits projectSaved but not fileNameChanged).
        self._project_signals = (self.project.readProject, self.project.cleared, self.project.fileNameChanged,
                                 self.project.projectSaved)
        for signal in self._project_signals:
            signal.connect(self._on_project_read)
        self._on_project_read()

    # Index -------------------------------------------------------------------------------

    def index_dir(self) -> Path:
        return Path(self.dock.index_dir()) if self.dock.index_dir() else project_index_dir(self.project)

    def set_index_dir(self, path: str) -> None:
        if path:
            remember_index_dir(path, self.project)
        self.refresh_index_info()

    def show_index(self, path: str | Path) -> None:
        """Called after a build: search the index just built."""
        self.dock.set_index_dir(path)
        remember_index_dir(path, self.project)
        self.refresh_index_info()

    def refresh_index_info(self) -> None:
        index_dir = self.index_dir()
        if not (index_dir / "manifest.json").is_file():
            self.dock.set_index_info("No index here yet: build one with 'Build index...'.")
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

    # Search ------------------------------------------------------------------------------

    def search(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem) -> SearchTask | None:
        """Start a search for the box (in `box_crs`); returns the task, or None with a message why not."""
        if not self.engine_ready():
            return None
        index_dir = self.index_dir()
        if not (index_dir / "manifest.json").is_file():
            self._warn(f"No index in {index_dir}: build one first (rsir > Build index...).")
            return None
        context = self.project.transformContext()
        found = query_raster(box, box_crs, project_rasters(self.project), context)
        if found is None:
            self._warn("The box is not over a file-based raster layer of the project.")
            return None
        layer, local_box = found
        log(f"Query box {box.toString(2)} ({box_crs.authid() or 'custom CRS'}) = {local_box.toString(2)} "
            f"in the CRS of {layer.name()} ({layer.crs().authid() or 'custom CRS'})")
        request = SearchRequest(
            index_dir=index_dir, raster_path=raster_file_path(layer), raster_name=layer.name(),
            box=(box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()),
            box_crs=crs_for_engine(box_crs), params=self.dock.search_settings().to_params(),
            output_crs=self.iface.mapCanvas().mapSettings().destinationCrs(), transform_context=context)
        if self._task is not None:
            self._task.cancel()  # the newest box is the one the user wants
        task = SearchTask(request)
        task.succeeded.connect(self._on_found)
        task.failed.connect(lambda error: self._on_failed(task, error))
        task.cancelled.connect(lambda: self._on_cancelled(task))
        self._task = task
        self.dock.set_status(f"Searching with a box on {layer.name()}...")
        QgsApplication.taskManager().addTask(task)
        return task

    def _on_found(self, outcome: SearchOutcome) -> None:
        self._task = None
        self.outcome = outcome
        hits_layer = self._layer("hits", make_hits_layer, outcome.crs)
        query_layer = self._layer("query", make_query_layer, outcome.crs)
        replace_features(hits_layer, outcome.hit_features)
        replace_features(query_layer, [outcome.query_feature] if outcome.query_feature else [])
        style_hits_by_score(hits_layer, [hit.score for hit in outcome.result.hits])
        self.dock.show_hits(outcome)
        result = outcome.result
        self.dock.set_status(f"{len(result.hits)} hit(s) for a box on {outcome.raster_name} "
                             f"in {result.seconds:.1f} s ({_device(result.provider)}).")
        if not result.hits:
            self._warn("No hits: lower the minimum score, or index more rasters.", Qgis.Info)
        self.searchFinished.emit(outcome)

    def _on_failed(self, task: SearchTask, error: str) -> None:
        if task is self._task:
            self._task = None
        self.dock.set_status("Search failed.")
        self._warn(f"Search failed: {error}", Qgis.Critical)

    def _on_cancelled(self, task: SearchTask) -> None:
        if task is self._task:
            self._task = None
            self.dock.set_status("Search cancelled.")

    def _layer(self, role: str, make, crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
        """The existing result layer (re-projected to the map CRS if that changed), else a new one on top."""
        layer = owned_layer(self.project, role)
        if layer is not None and layer.crs() != crs:
            self.project.removeMapLayer(layer.id())
            layer = None
        if layer is None:
            layer = make(crs)
            add_on_top(self.project, layer)
        return layer

    # Dock actions ------------------------------------------------------------------------

    def zoom_to_hit(self, rank: int) -> None:
        layer = owned_layer(self.project, "hits")
        if layer is None:
            return
        for feature in layer.getFeatures():
            if feature["rank"] == rank:
                canvas = self.iface.mapCanvas()
                extent = feature.geometry().boundingBox()
                extent.scale(3.0)  # some context around the tile
                canvas.setExtent(extent)
                canvas.refresh()
                # Flash rather than select: a selected polygon is filled opaque and hides the imagery.
                canvas.flashFeatureIds(layer, [feature.id()])
                return

    def clear(self) -> None:
        for role in ("hits", "query"):
            layer = owned_layer(self.project, role)
            if layer is not None:
                self.project.removeMapLayer(layer.id())
        self.outcome = None
        self.dock.clear_hits()
        self.dock.set_status("")

    def save(self, path: str) -> None:
        if self.outcome is None:
            return
        from ..core.hits_io import write_hits

        crs = crs_for_engine(self.outcome.crs)
        task = InfoTask(f"rsir: saving hits to {Path(path).name}", write_hits, self.outcome.result, Path(path), crs)
        task.succeeded.connect(lambda written: self._warn(f"Hits saved to {written}", Qgis.Success))
        task.failed.connect(lambda error: self._warn(f"Saving hits failed: {error}", Qgis.Critical))
        self._save_task = task
        QgsApplication.taskManager().addTask(task)

    # Lifetime ----------------------------------------------------------------------------

    def running_tasks(self) -> list:
        return [t for t in (self._task, self._info_task, self._save_task) if is_active(t)]

    def disconnect_project(self) -> None:
        for signal in self._project_signals:
            signal.disconnect(self._on_project_read)

    def _warn(self, text: str, level: Qgis.MessageLevel = Qgis.Warning) -> None:
        """Message bar, log, and the dock's status line (the dock is where the user is looking)."""
        self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level, 8)
        self.dock.set_status(text)
        log(text, level)


def _device(provider: str) -> str:
    return "CUDA" if "CUDA" in provider else "CPU"


def summarize_index(info) -> str:
    """Two short lines for the dock; the full description goes in the tooltip."""
    return (f"{info.tile_count} tiles from {len(info.rasters)} raster(s), {info.size_bytes / 1e6:.1f} MB\n"
            f"model {info.model.get('name', '?')}, built {info.built_at[:16].replace('T', ' ')}")


def _read_index_info(index_dir: Path):
    """In the worker thread: the engine's modules are imported there too, not on the UI thread."""
    from ..core.store import read_index_info

    return read_index_info(index_dir)
