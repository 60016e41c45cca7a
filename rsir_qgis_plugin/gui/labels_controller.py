"""The dock's relevance-feedback actions, as calls on the `rsir labels` layer (labels/): thumbs on the
shown hits, boxes labelled on the map, saving the labels to a GeoPackage and loading them again.

The layer is the only store of labels: what the user edits there (attribute table, digitizing) is
what a refined search uses, and the dock's thumbs and counts show what the layer holds.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..labels.convert import box_geometry
from ..labels.edit import add_label, count_labels, hit_labels, label_query_box, mark_hit
from ..labels.files import GPKG_LAYER_NAME, open_labels_file, write_label_layer
from ..labels.layer import adopt, find_labels_layer, insert_in_place_of, label_text, make_labels_layer, retire
from ..layers import add_on_top, raster_file_path
from ..tasks import InfoTask, is_active
from .dock import ResultsDock


class LabelsController(QObject):
    """Owns the labels layer's connection to the dock: its edits, counts and thumbs, and its files."""

    labelsChanged = pyqtSignal()  # the labels layer was changed, replaced or removed
    labelsSaved = pyqtSignal(str)  # path of the GeoPackage written

    def __init__(self, iface, dock: ResultsDock, warn: Callable[..., None]):
        super().__init__()
        self.iface = iface
        self.dock = dock
        self.warn = warn  # message bar, log and the dock's status line
        self.project = QgsProject.instance()
        self._result = None  # core.search.SearchResult whose hits the dock shows
        self._save_task: InfoTask | None = None
        self._revision = 0  # counts changes to the labels, so a save knows if it is still current
        self._watched: set[str] = set()  # ids of labels layers whose edit signals are connected
        self._query_labelled = False  # the shown result's query box was added as a positive label
        dock.hitLabelled.connect(self.label_hit)
        dock.saveLabelsRequested.connect(self.save_labels)
        dock.loadLabelsRequested.connect(self.load_labels)
        self._layer_signals = (self.project.layersAdded, self.project.layersRemoved)
        for signal in self._layer_signals:
            signal.connect(self._on_layers_changed)

    def layer(self, create: bool = False) -> QgsVectorLayer | None:
        """The project's labels layer (a new memory layer on top, in the map CRS, if `create`)."""
        layer = find_labels_layer(self.project)
        if layer is None and create:
            layer = make_labels_layer(self.iface.mapCanvas().mapSettings().destinationCrs())
            add_on_top(self.project, layer)
        if layer is not None and layer.id() not in self._watched:
            self._watch(layer)
        return layer

    def show_result(self, result) -> None:
        """The dock shows `result`'s hits from now on (None: no hits)."""
        self._result = result
        self._query_labelled = False

    def hit_labels(self) -> dict[int, str]:
        """rank -> label of the shown hits that the labels layer holds."""
        return self._hit_labels(self.layer())

    def label_hit(self, rank: int, label: str) -> None:
        """Thumbs up ('positive'), down ('negative') or neither ('') on hit `rank` of the shown result."""
        hit = self._hit(rank)
        if hit is None:
            return
        layer = self.layer(create=bool(label))
        if layer is None:
            return
        mark_hit(layer, hit, label, self.project.transformContext())
        if label:
            self._label_query_box(layer)
        self._edited()
        counts = count_labels(layer)
        self.dock.set_status(f"#{rank} {label or 'unlabelled'}; labels: {counts.describe()}. "
                             "Refine to search with them.")

    def label_box(self, box: QgsRectangle, box_crs: QgsCoordinateReferenceSystem, raster: QgsRasterLayer,
                  positive: bool) -> None:
        """A box drawn on the map (in `box_crs`) over `raster`, as a label on that raster."""
        layer = self.layer(create=True)
        geometry = box_geometry(box, box_crs, layer.crs(), self.project.transformContext())
        add_label(layer, geometry, raster_file_path(raster), positive)
        self._edited()
        counts = count_labels(layer)
        self.dock.set_status(f"{label_text(positive).capitalize()} box added on {raster.name()}; "
                             f"labels: {counts.describe()}. Refine to search with them.")

    def save_labels(self, path: str) -> InfoTask | None:
        """Write the labels to a GeoPackage in a task; then that file becomes the labels layer, so
        later marks are written to it and survive a restart of QGIS."""
        layer = self.layer()
        if layer is None:
            self.warn("No labels to save yet.", Qgis.MessageLevel.Info)
            return None
        features = list(layer.getFeatures())  # copies, with the user's unsaved edits
        revision = self._revision
        task = InfoTask(f"rsir: saving labels to {Path(path).name}", write_label_layer, features,
                        layer.crs(), Path(path), self.project.transformContext())
        task.succeeded.connect(lambda written: self._on_saved(layer.id(), Path(written), revision))
        task.failed.connect(
            lambda error: self.warn(f"Saving labels failed: {error}", Qgis.MessageLevel.Critical))
        self._save_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def load_labels(self, path: str) -> QgsVectorLayer | None:
        """Make the labels of a saved GeoPackage the labels layer (the previous one, if it holds any
        labels, stays in the project under another name)."""
        layer = open_labels_file(path)
        if layer is None:
            self.warn(f"{path} holds no labels layer (a polygon layer '{GPKG_LAYER_NAME}' with "
                      "fields raster and label).")
            return None
        previous = find_labels_layer(self.project)
        if previous is not None:
            self._unwatch(previous)
            retire(self.project, previous)
        adopt(layer)
        add_on_top(self.project, layer)
        self.layer()
        self._edited()
        counts = count_labels(layer)
        self.warn(f"Labels loaded from {path}: {counts.describe()}.", Qgis.MessageLevel.Success)
        return layer

    def refresh(self) -> None:
        """The dock's label counts, buttons and thumbs, from what the labels layer holds now."""
        layer = self.layer()
        counts = count_labels(layer)
        total = counts.positive + counts.negative + counts.other
        text = f"Labels in '{layer.name()}': {counts.describe()}." if layer is not None else "No labels yet."
        self.dock.set_labels_info(text, has_labels=total > 0, can_refine=counts.positive > 0)
        self.dock.set_hit_labels(self._hit_labels(layer))

    def running_tasks(self) -> list:
        return [self._save_task] if is_active(self._save_task) else []

    def disconnect_project(self) -> None:
        for signal in self._layer_signals:
            signal.disconnect(self._on_layers_changed)
        layer = find_labels_layer(self.project)
        if layer is not None and layer.id() in self._watched:
            self._unwatch(layer)

    def _hit(self, rank: int):
        if self._result is None:
            return None
        return next((hit for hit in self._result.hits if hit.rank == rank), None)

    def _hit_labels(self, layer: QgsVectorLayer | None) -> dict[int, str]:
        """rank -> label of the shown hits that the labels layer holds."""
        if layer is None or self._result is None:
            return {}
        return hit_labels(layer, self._result.hits, self.project.transformContext())

    def _label_query_box(self, layer: QgsVectorLayer) -> None:
        """The first mark on a box search's hits also labels its query box positive: a refined search
        still looks for what the box showed."""
        if self._query_labelled or self._result is None:
            return
        self._query_labelled = True
        label_query_box(layer, self._result, self.project.transformContext())

    def _edited(self, *_args) -> None:
        self._revision += 1
        self.refresh()
        self.labelsChanged.emit()

    def _on_saved(self, layer_id: str, path: Path, revision: int) -> None:
        saved_from = self.project.mapLayer(layer_id)
        if saved_from is None or revision != self._revision:
            self.warn(f"Labels saved to {path}; they changed while saving: save again to keep the latest.",
                      Qgis.MessageLevel.Warning)
            self.labelsSaved.emit(str(path))
            return
        layer = open_labels_file(path)
        if layer is None:
            self.warn(f"Labels saved to {path}, but the file does not open as a labels layer.",
                      Qgis.MessageLevel.Critical)
            return
        adopt(layer)
        insert_in_place_of(self.project, saved_from, layer)
        self._unwatch(saved_from)
        self.project.removeMapLayer(saved_from.id())
        self.layer()
        self._edited()
        self.warn(f"Labels saved to {path} (layer {GPKG_LAYER_NAME}); 'rsir labels' is now that "
                  "file, so later marks are saved in it.", Qgis.MessageLevel.Success)
        self.labelsSaved.emit(str(path))

    def _watch(self, layer: QgsVectorLayer) -> None:
        """Edits the user makes in the layer (attribute table, digitizing) update the dock."""
        self._watched.add(layer.id())
        for signal in _edit_signals(layer):
            signal.connect(self._edited)

    def _unwatch(self, layer: QgsVectorLayer) -> None:
        if layer.id() not in self._watched:
            return
        self._watched.discard(layer.id())
        for signal in _edit_signals(layer):
            with contextlib.suppress(TypeError):
                signal.disconnect(self._edited)

    def _on_layers_changed(self, *_args) -> None:
        self._watched &= set(self.project.mapLayers())
        self.refresh()


def _edit_signals(layer: QgsVectorLayer) -> tuple:
    return (layer.featureAdded, layer.featuresDeleted, layer.attributeValueChanged, layer.geometryChanged,
            layer.afterCommitChanges, layer.afterRollBack)
