"""The dock's "Map all matches" box: score every tile of the index with the labels' classifier once (a
QgsTask), then a threshold slider previews the polygons, tiles and area the map would have (only the
scores kept in memory are re-thresholded, in a task too), and "Map matches..." writes the map file in a task and adds it
as a layer (core/match_map.py, core/map_io.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.core import QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from ..core.errors import RsirError
from ..tasks import EngineTask, InfoTask, is_active, start_task
from .file_dialogs import ask_save_gpkg

SLIDER_STEPS = 100  # the threshold in hundredths: 0.00 to 1.00
PREVIEW_DELAY_MS = 120  # a dragged slider previews once it rests, not at every step


class ScoreTilesTask(EngineTask):
    """The labels layer as Feedback, then score_tiles(): every tile's score, kept for the slider."""

    progressMessage = pyqtSignal(str)

    def __init__(self, index_dir: str, labels: QgsVectorLayer, project: QgsProject):
        super().__init__(f"rsir: scoring every tile of {Path(index_dir).name}")
        from ..labels.convert import footprints
        from ..labels.files import labels_dir
        from ..layers import project_rasters

        # Gathered on the UI thread: layers and the project are read here, features in work().
        self.index_dir, self.labels, self.crs = index_dir, labels, labels.crs()
        self.rasters = footprints(project_rasters(project))
        self.context, self.folder = project.transformContext(), labels_dir(labels)
        self.source = labels.source().split("|")[0] if labels.providerType() == "ogr" else labels.name()

    def work(self):
        from ..core.match_map import MapParams, score_tiles
        from ..labels.convert import feedback_from_features

        read = feedback_from_features(self.labels.getFeatures(), self.crs, self.rasters, self.context, self.folder)
        if read.positives == 0:
            raise RsirError("no positive label to map with: mark hits with thumbs up or Shift-drag boxes first")
        return score_tiles(self.index_dir, read.feedback, MapParams(), self.source, self._progress,
                           self.isCanceled)

    def _progress(self, percent: float, message: str) -> None:
        self.setProgress(max(0.0, min(100.0, float(percent))))
        self.progressMessage.emit(message)


def write_map_file(tile_scores, threshold: float, path: str, index_dir: str):
    """Dissolve at the threshold and write the map (in a task: outlines and the file take time)."""
    from ..core.map_io import write_map
    from ..core.match_map import dissolve

    result = dissolve(tile_scores, threshold)
    write_map(result, path, index_dir)
    return result


class MapPanel(QGroupBox):
    """Scores once, previews any threshold from memory, writes the map on request."""

    scoresReady = pyqtSignal(object)  # TileScores
    mapRequested = pyqtSignal(str)  # the map file chosen in the dialog
    mapWritten = pyqtSignal(str)  # the map file, written and added as a layer

    def __init__(self, index_dir: Callable[[], str], parent: QWidget | None = None):
        super().__init__("Map all matches", parent)
        self._index_dir = index_dir
        self.tile_scores = None  # core.match_map.TileScores of the last scoring
        self._task: EngineTask | None = None
        self._preview_task: EngineTask | None = None
        self._shown: float | None = None  # the threshold the label speaks of (a preview or the map written)
        self.score_button = QPushButton("Score tiles", self)
        self.score_button.setToolTip("Score every tile of the index with the classifier of the 'rsir labels' "
                                     "layer (the probability Refine ranks by), once; then choose a threshold")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setValue(SLIDER_STEPS // 2)
        self.slider.setToolTip("The score a tile needs to be mapped (a probability)")
        self.threshold_label = QLabel(self)
        self.preview_label = QLabel("Score the tiles to preview a map.", self)
        self.preview_label.setWordWrap(True)
        self.map_button = QPushButton("Map matches...", self)
        self.map_button.setToolTip("Write the matched tiles, merged into polygons, to a GeoPackage and add it")
        self._build_layout()
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.preview)
        self.slider.valueChanged.connect(self._on_slider)
        self.score_button.clicked.connect(self.score)
        self.map_button.clicked.connect(self._on_map_clicked)
        self.mapRequested.connect(self.write_map)
        self._on_slider()
        self._set_scored(False)

    def _build_layout(self) -> None:
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.threshold_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.score_button)
        buttons.addWidget(self.map_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(slider_row)
        layout.addWidget(self.preview_label)
        layout.addLayout(buttons)

    def threshold(self) -> float:
        return self.slider.value() / SLIDER_STEPS

    def set_threshold(self, value: float) -> None:
        self.slider.setValue(round(value * SLIDER_STEPS))

    def score(self) -> None:
        """Start scoring every tile with the project's labels layer (a task)."""
        from ..labels.layer import find_labels_layer

        if is_active(self._task):
            return
        project = QgsProject.instance()
        labels = find_labels_layer(project)
        if not self._index_dir():
            self.preview_label.setText("Choose an index folder first.")
            return
        if labels is None or labels.featureCount() == 0:
            self.preview_label.setText("No labels: mark hits with thumbs up/down or Shift/Ctrl-drag boxes first.")
            return
        task = ScoreTilesTask(self._index_dir(), labels, project)
        task.progressMessage.connect(self.preview_label.setText)
        task.succeeded.connect(self._on_scored)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(lambda: self.preview_label.setText("Scoring cancelled."))
        self._start(task, "Scoring every tile...")

    def preview(self) -> None:
        """The polygons, tiles and area at the slider's threshold, from the kept scores (no file read), in a
        task: at 10^6 tiles a dissolve takes seconds, and the slider must not freeze meanwhile."""
        from ..core.match_map import summarise

        if self.tile_scores is None or is_active(self._preview_task) or self._shown == self.threshold():
            return  # a preview running (its end previews again if the slider moved meanwhile), or shown
        threshold, scores = self.threshold(), self.tile_scores
        task = InfoTask("rsir: previewing the map", summarise, scores, threshold)
        task.succeeded.connect(lambda summary: self._on_previewed(scores, threshold, summary))
        task.failed.connect(self._on_failed)
        self._preview_task = task
        QgsApplication.taskManager().addTask(task)

    def _on_previewed(self, scores, threshold: float, summary) -> None:
        from ..core.match_map import area_text

        self._preview_task = None
        if scores is not self.tile_scores or is_active(self._task):
            return  # scored again, or writing: that says what happens now
        if threshold != self.threshold():
            self.preview()
            return
        if threshold == self._shown:
            return
        self._shown = threshold
        self.preview_label.setText(f"{summary.polygons} polygon(s), {summary.tiles} of {len(scores.scores)} "
                                   f"tiles, {area_text(summary.area_m2)}")

    def write_map(self, path: str) -> None:
        """Dissolve at the threshold and write `path` in a task, then add it as a layer."""
        if self.tile_scores is None or is_active(self._task):
            return
        threshold = self.threshold()
        task = InfoTask(f"rsir: writing the map {Path(path).name}", write_map_file, self.tile_scores, threshold,
                        path, self._index_dir())
        task.succeeded.connect(lambda result: self._on_written(path, threshold, result))
        task.failed.connect(self._on_failed)
        self._start(task, f"Writing {Path(path).name}...")

    def _start(self, task: EngineTask, text: str) -> None:
        self._task, self._shown = task, None
        self.preview_label.setText(text)
        self.score_button.setEnabled(False)
        self.map_button.setEnabled(False)
        start_task(task, self._on_task_over)

    def _on_task_over(self) -> None:
        self.score_button.setEnabled(True)
        self._set_scored(self.tile_scores is not None)

    def _on_scored(self, tile_scores) -> None:
        self.tile_scores, self._shown = tile_scores, None
        self._set_scored(True)
        self.preview()
        self.scoresReady.emit(tile_scores)

    def _on_written(self, path: str, threshold: float, result) -> None:
        layer = QgsVectorLayer(f"{path}|layername=rsir_map", f"rsir map (score ≥ {threshold:.2f})", "ogr")
        if layer.isValid():
            QgsProject.instance().addMapLayer(layer)
        self._shown = threshold
        self.preview_label.setText(f"{result.describe()}; written to {path}")
        self.mapWritten.emit(path)

    def _on_failed(self, message: str) -> None:
        self._shown = None
        self.preview_label.setText(message)

    def _on_slider(self, *_args) -> None:
        self.threshold_label.setText(f"≥ {self.threshold():.2f}")
        self._preview_timer.start()

    def _on_map_clicked(self) -> None:
        path = ask_save_gpkg(self, "Map matches", "rsir_map.gpkg")
        if path:
            self.mapRequested.emit(path)

    def _set_scored(self, scored: bool) -> None:
        self.slider.setEnabled(scored)
        self.map_button.setEnabled(scored and not is_active(self._task))
