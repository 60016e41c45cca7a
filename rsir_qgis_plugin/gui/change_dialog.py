"""The Compare dates window: the index, the before and after raster layers, how many places; then Hot spots,
or Search by a change (drag a box on the map around a change). It stays open beside the map (not modal).

Only what the user chose leaves it, as a DatesChoice; the change controller runs the searches."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.change_params import HOTSPOT_SCORES
from ..layers import project_rasters

SCORE_TEXTS = {"change": "how much it changed (1 - cosine)",
               "unusual": "unusual change (unlike places that looked alike)"}
HINT = ("Hot spots ranks the before raster's indexed places by how much they changed. Search by a change: drag "
        "a box on the map around a place that changed the way you seek (Shift-drag adds another example, "
        "Ctrl-drag one that is not what you seek).")


@dataclass(frozen=True)
class DatesChoice:
    index_dir: Path | None
    before: QgsRasterLayer | None
    after: QgsRasterLayer | None
    k: int
    hotspots: str  # "change" or "unusual" (core ChangeParams.hotspots)


class CompareDatesDialog(QDialog):
    hotspotsRequested = pyqtSignal()

    def __init__(self, project: QgsProject, index_dir: Path | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = project
        self.setObjectName("rsirCompareDatesDialog")
        self.setWindowTitle("rsir: compare dates")
        self.index_widget = QgsFileWidget(self)
        self.index_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.index_widget.setDialogTitle("Index folder")
        if index_dir is not None:
            self.index_widget.setFilePath(str(index_dir))
        self.before_box = QComboBox(self)
        self.after_box = QComboBox(self)
        self.k_spin = QSpinBox(self)
        self.k_spin.setRange(1, 500)
        self.k_spin.setValue(20)
        self.score_box = QComboBox(self)
        for score in HOTSPOT_SCORES:
            self.score_box.addItem(SCORE_TEXTS.get(score, score), score)
        form = QFormLayout()
        form.addRow("Index", self.index_widget)
        form.addRow("Before (indexed)", self.before_box)
        form.addRow("After", self.after_box)
        form.addRow("Places", self.k_spin)
        form.addRow("Hot spots by", self.score_box)
        hint = QLabel(HINT, self)
        hint.setWordWrap(True)
        self.hotspots_button = QPushButton("Hot spots", self)
        self.hotspots_button.setToolTip("Rank the places by how much they changed, in the background")
        self.hotspots_button.clicked.connect(self.hotspotsRequested)
        self.draw_button = QPushButton("Search by a change", self)
        self.draw_button.setCheckable(True)  # checked while the map tool is on (QgsMapTool.setButton)
        self.draw_button.setToolTip("Then drag a box on the map around a place that changed")
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for button in (self.hotspots_button, self.draw_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addLayout(buttons)
        self.refresh_layers()

    def refresh_layers(self) -> None:
        """The project's file-based rasters (the engine reads files), keeping the choices still there.

        With nothing chosen yet and two rasters or more: the lower one before, the upper one after
        (imagery added later lands on top)."""
        chosen = [box.currentData() for box in (self.before_box, self.after_box)]
        layers = project_rasters(self.project)
        for box in (self.before_box, self.after_box):
            box.clear()
            for layer in layers:
                box.addItem(layer.name(), layer.id())
        for box, layer_id, default in zip((self.before_box, self.after_box), chosen, (len(layers) - 1, 0)):
            found = box.findData(layer_id) if layer_id else -1
            box.setCurrentIndex(found if found >= 0 else max(default, 0) if layers else -1)

    def set_dates(self, before: QgsRasterLayer, after: QgsRasterLayer) -> None:
        self.before_box.setCurrentIndex(self.before_box.findData(before.id()))
        self.after_box.setCurrentIndex(self.after_box.findData(after.id()))

    def choice(self) -> DatesChoice:
        path = self.index_widget.filePath().strip()
        return DatesChoice(index_dir=Path(path) if path else None, before=self._layer(self.before_box),
                           after=self._layer(self.after_box), k=self.k_spin.value(),
                           hotspots=self.score_box.currentData())

    def _layer(self, box: QComboBox) -> QgsRasterLayer | None:
        layer_id = box.currentData()
        return self.project.mapLayer(layer_id) if layer_id else None
