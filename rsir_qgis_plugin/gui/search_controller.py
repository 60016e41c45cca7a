"""From a box drawn on the map to hits on the map and in the dock, and relevance feedback.

box drawn (map CRS) -> the raster under it -> SearchRequest -> SearchTask (worker thread)
-> `rsir hits` / `rsir query` layers and the dock's list. One search runs at a time: a new
box (or Refine) cancels the running one.

Feedback: thumbs up/down on a hit and Shift-/Ctrl-drags on the map add features to the `rsir
labels` layer (labels_layer.py); Refine reads that layer in a FeedbackSearchTask and shows its
hits like a box search's. The layer is the only store of labels: what the user edits there is
what Refine uses, and the dock's thumbs show what the layer holds.
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
    QgsVectorLayerFeatureSource,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .. import labels_layer as labels
from ..settings import project_index_dir, remember_index_dir
from ..tasks import (
    FeedbackRequest,
    FeedbackSearchTask,
    InfoTask,
    SearchOutcome,
    SearchRequest,
    SearchTask,
    is_active,
    log,
)
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
    labelsChanged = pyqtSignal()  # the labels layer was changed, replaced or removed
    labelsSaved = pyqtSignal(str)  # path of the GeoPackage written

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
        self._labels_save_task: InfoTask | None = None
        self._labels_revision = 0  # counts changes to the labels, so a save knows if it is still current
        self._watched: set[str] = set()  # ids of labels layers whose edit signals are connected
        self._query_labelled = False  # the current search's query box was added as a positive label
        dock.indexDirChanged.connect(self.set_index_dir)
        dock.hitActivated.connect(self.zoom_to_hit)
        dock.clearRequested.connect(self.clear)
        dock.saveRequested.connect(self.save)
        dock.hitLabelled.connect(self.label_hit)
        dock.refineRequested.connect(self.refine)
        dock.saveLabelsRequested.connect(self.save_labels)
        dock.loadLabelsRequested.connect(self.load_labels)
        self._layer_signals = (self.project.layersAdded, self.project.layersRemoved)
        for signal in self._layer_signals:
            signal.connect(self._on_layers_changed)
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
        self.refresh_labels()

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
        return self._start(SearchTask(request), f"Searching with a box on {layer.name()}...")

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
        self._task = None
        self.outcome = outcome
        self._query_labelled = False
        hits_layer = self._layer("hits", make_hits_layer, outcome.crs)
        query_layer = self._layer("query", make_query_layer, outcome.crs)
        replace_features(hits_layer, outcome.hit_features)
        replace_features(query_layer, [outcome.query_feature] if outcome.query_feature else [])
        style_hits_by_score(hits_layer, [hit.score for hit in outcome.result.hits])
        self.dock.show_hits(outcome, self._hit_labels(self.labels_layer()))
        result = outcome.result
        what = (f"refined with {outcome.raster_name}" if outcome.feedback is not None
                else f"for a box on {outcome.raster_name}")
        self.dock.set_status(f"{len(result.hits)} hit(s) {what} in {result.seconds:.1f} s "
                             f"({_device(result.provider)}).")
        if outcome.notes:
            self._warn(f"{len(outcome.notes)} label(s) left out: " + "; ".join(outcome.notes[:5]))
        if not result.hits:
            self._warn("No hits: lower the minimum score, or index more rasters.", Qgis.Info)
        self.searchFinished.emit(outcome)

    def _on_failed(self, task, error: str) -> None:
        if task is self._task:
            self._task = None
        self.dock.set_status("Search failed.")
        self._warn(f"Search failed: {error}", Qgis.Critical)

    def _on_cancelled(self, task) -> None:
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

    # Relevance feedback -------------------------------------------------------------------

    def labels_layer(self, create: bool = False) -> QgsVectorLayer | None:
        """The project's labels layer (a new memory layer on top, in the map CRS, if `create`)."""
        layer = labels.find_labels_layer(self.project)
        if layer is None and create:
            layer = labels.make_labels_layer(self.iface.mapCanvas().mapSettings().destinationCrs())
            add_on_top(self.project, layer)
        if layer is not None and layer.id() not in self._watched:
            self._watch(layer)
        return layer

    def label_hit(self, rank: int, label: str) -> None:
        """Thumbs up ('positive'), down ('negative') or neither ('') on hit `rank` of the shown result."""
        hit = self._hit(rank)
        if hit is None:
            return
        layer = self.labels_layer(create=bool(label))
        if layer is None:
            return
        context = self.project.transformContext()
        geometry = labels.hit_geometry(hit, layer.crs(), context)
        existing = labels.find_label(layer, str(hit.raster), geometry)
        if not label:
            if existing is not None:
                labels.remove_label(layer, existing.id())
        elif existing is not None:
            labels.set_label(layer, existing.id(), label == labels.POSITIVE)
        else:
            labels.add_label(layer, geometry, str(hit.raster), label == labels.POSITIVE)
        if label:
            self._label_query_box(layer)
        self._labels_edited()
        counts = labels.count_labels(layer)
        self.dock.set_status(f"#{rank} {label or 'unlabelled'}; labels: {counts.describe()}. "
                             "Refine to search with them.")

    def label_box(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, positive: bool) -> bool:
        """A Shift-drag (positive) or Ctrl-drag (negative) on the map: a label on the raster under it."""
        context = self.project.transformContext()
        found = query_raster(box, box_crs, project_rasters(self.project), context)
        if found is None:
            self._warn("The box is not over a file-based raster layer of the project: no label added.")
            return False
        raster = found[0]
        layer = self.labels_layer(create=True)
        geometry = labels.box_geometry(box, box_crs, layer.crs(), context)
        labels.add_label(layer, geometry, raster_file_path(raster), positive)
        self._labels_edited()
        counts = labels.count_labels(layer)
        self.dock.set_status(f"{labels.label_text(positive).capitalize()} box added on {raster.name()}; "
                             f"labels: {counts.describe()}. Refine to search with them.")
        return True

    def refine(self) -> FeedbackSearchTask | None:
        """Search again with every label of the labels layer, in a task; None with a message why not."""
        if not self.engine_ready():
            return None
        index_dir = self.index_dir()
        if not (index_dir / "manifest.json").is_file():
            self._warn(f"No index in {index_dir}: build one first (rsir > Build index...).")
            return None
        layer = self.labels_layer()
        if layer is None or labels.count_labels(layer).positive == 0:
            self._warn("Nothing to refine with: mark a hit with thumbs up, or Shift-drag a positive box "
                       "on the map, first.")
            return None
        request = FeedbackRequest(
            index_dir=index_dir, labels=QgsVectorLayerFeatureSource(layer), labels_crs=layer.crs(),
            rasters=tuple(labels.footprints(project_rasters(self.project))),
            params=self.dock.search_settings().to_params(),
            output_crs=self.iface.mapCanvas().mapSettings().destinationCrs(),
            transform_context=self.project.transformContext(), labels_dir=labels.labels_dir(layer))
        counts = labels.count_labels(layer)
        return self._start(FeedbackSearchTask(request), f"Refining with {counts.describe()} label(s)...")

    def save_labels(self, path: str) -> InfoTask | None:
        """Write the labels to a GeoPackage in a task; then that file becomes the labels layer, so
        later marks are written to it and survive a restart of QGIS."""
        layer = self.labels_layer()
        if layer is None:
            self._warn("No labels to save yet.", Qgis.Info)
            return None
        features = list(layer.getFeatures())  # copies, with the user's unsaved edits
        revision = self._labels_revision
        task = InfoTask(f"rsir: saving labels to {Path(path).name}", labels.write_labels, features,
                        layer.crs(), Path(path), self.project.transformContext())
        task.succeeded.connect(lambda written: self._on_labels_saved(layer.id(), Path(written), revision))
        task.failed.connect(lambda error: self._warn(f"Saving labels failed: {error}", Qgis.Critical))
        self._labels_save_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def load_labels(self, path: str) -> QgsVectorLayer | None:
        """Make the labels of a saved GeoPackage the labels layer (the previous one, if it holds any
        labels, stays in the project under another name)."""
        layer = labels.open_labels_file(path)
        if layer is None:
            self._warn(f"{path} holds no labels layer (a polygon layer '{labels.GPKG_LAYER_NAME}' with "
                       "fields raster and label).")
            return None
        previous = labels.find_labels_layer(self.project)
        if previous is not None:
            self._retire(previous)
        labels.adopt(layer)
        add_on_top(self.project, layer)
        self.labels_layer()
        self._labels_edited()
        counts = labels.count_labels(layer)
        self._warn(f"Labels loaded from {path}: {counts.describe()}.", Qgis.Success)
        return layer

    def refresh_labels(self) -> None:
        """The dock's label counts, buttons and thumbs, from what the labels layer holds now."""
        layer = self.labels_layer()
        counts = labels.count_labels(layer)
        total = counts.positive + counts.negative + counts.other
        text = f"Labels in '{layer.name()}': {counts.describe()}." if layer is not None else "No labels yet."
        self.dock.set_labels_info(text, has_labels=total > 0, can_refine=counts.positive > 0)
        self.dock.set_hit_labels(self._hit_labels(layer))

    def _hit(self, rank: int):
        if self.outcome is None:
            return None
        return next((hit for hit in self.outcome.result.hits if hit.rank == rank), None)

    def _hit_labels(self, layer: QgsVectorLayer | None) -> dict[int, str]:
        """rank -> label of the shown hits that the labels layer holds."""
        if layer is None or self.outcome is None:
            return {}
        context = self.project.transformContext()
        found = {}
        for hit in self.outcome.result.hits:
            geometry = labels.hit_geometry(hit, layer.crs(), context)
            feature = labels.find_label(layer, str(hit.raster), geometry)
            if feature is not None:
                positive = labels.parse_label(feature["label"])
                if positive is not None:
                    found[hit.rank] = labels.label_text(positive)
        return found

    def _label_query_box(self, layer: QgsVectorLayer) -> None:
        """The first mark on a box search's hits also labels its query box positive: a refined search
        still looks for what the box showed."""
        if self._query_labelled or self.outcome is None:
            return
        self._query_labelled = True
        result = self.outcome.result
        if not result.query_polygon or not result.query_raster:
            return  # a refined search has no query box of its own
        geometry = labels.ring_geometry(result.query_polygon, result.query_crs_wkt, layer.crs(),
                                        self.project.transformContext())
        if labels.find_label(layer, str(result.query_raster), geometry) is None:
            labels.add_label(layer, geometry, str(result.query_raster), True)

    def _labels_edited(self, *_args) -> None:
        self._labels_revision += 1
        self.refresh_labels()
        self.labelsChanged.emit()

    def _on_labels_saved(self, layer_id: str, path: Path, revision: int) -> None:
        saved_from = self.project.mapLayer(layer_id)
        if saved_from is None or revision != self._labels_revision:
            self._warn(f"Labels saved to {path}; they changed while saving: save again to keep the latest.",
                       Qgis.Warning)
            self.labelsSaved.emit(str(path))
            return
        layer = labels.open_labels_file(path)
        if layer is None:
            self._warn(f"Labels saved to {path}, but the file does not open as a labels layer.",
                       Qgis.Critical)
            return
        labels.adopt(layer)
        self._replace_layer(saved_from, layer)
        self.labels_layer()
        self._labels_edited()
        self._warn(f"Labels saved to {path} (layer {labels.GPKG_LAYER_NAME}); 'rsir labels' is now that "
                   "file, so later marks are saved in it.", Qgis.Success)
        self.labelsSaved.emit(str(path))

    def _replace_layer(self, old: QgsVectorLayer, new: QgsVectorLayer) -> None:
        """Put `new` where `old` is in the layer tree, and remove `old`."""
        root = self.project.layerTreeRoot()
        node = root.findLayer(old.id())
        self.project.addMapLayer(new, False)
        if node is None:
            root.insertLayer(0, new)
        else:
            parent = node.parent()
            parent.insertLayer(parent.children().index(node), new)
        self._unwatch(old)
        self.project.removeMapLayer(old.id())

    def _retire(self, layer: QgsVectorLayer) -> None:
        """Stop using `layer` as the labels layer: removed if empty, else kept under another name."""
        self._unwatch(layer)
        if layer.featureCount() == 0:
            self.project.removeMapLayer(layer.id())
            return
        layer.setCustomProperty(labels.ROLE_PROPERTY, "labels-previous")
        layer.setName(f"{labels.LABELS_LAYER_NAME} (before loading)")

    def _watch(self, layer: QgsVectorLayer) -> None:
        """Edits the user makes in the layer (attribute table, digitizing) update the dock."""
        self._watched.add(layer.id())
        for signal in _edit_signals(layer):
            signal.connect(self._labels_edited)

    def _unwatch(self, layer: QgsVectorLayer) -> None:
        if layer.id() not in self._watched:
            return
        self._watched.discard(layer.id())
        for signal in _edit_signals(layer):
            try:
                signal.disconnect(self._labels_edited)
            except TypeError:
                pass

    def _on_layers_changed(self, *_args) -> None:
        self._watched &= set(self.project.mapLayers())
        self.refresh_labels()

    # Lifetime ----------------------------------------------------------------------------

    def running_tasks(self) -> list:
        tasks = (self._task, self._info_task, self._save_task, self._labels_save_task)
        return [t for t in tasks if is_active(t)]

    def disconnect_project(self) -> None:
        for signal in self._project_signals:
            signal.disconnect(self._on_project_read)
        for signal in self._layer_signals:
            signal.disconnect(self._on_layers_changed)
        layer = labels.find_labels_layer(self.project)
        if layer is not None and layer.id() in self._watched:
            self._unwatch(layer)

    def _warn(self, text: str, level: Qgis.MessageLevel = Qgis.Warning) -> None:
        """Message bar, log, and the dock's status line (the dock is where the user is looking)."""
        self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level, 8)
        self.dock.set_status(text)
        log(text, level)


def _edit_signals(layer: QgsVectorLayer) -> tuple:
    return (layer.featureAdded, layer.featuresDeleted, layer.attributeValueChanged, layer.geometryChanged,
            layer.afterCommitChanges, layer.afterRollBack)


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
