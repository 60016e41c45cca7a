"""The results dock: which index, search options, the hit list with thumbnails, clear and save.

The dock only collects what the user chose and shows what it is given; `SearchController`
runs searches and owns the layers.
"""
from __future__ import annotations

from pathlib import Path

from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt.QtCore import QSize, Qt, pyqtSignal
from qgis.PyQt.QtGui import QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QAction,
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..settings import SearchSettings, load_search_settings, save_search_settings
from .thumbnails import THUMBNAIL_PX, to_qimage

RANK_ROLE = Qt.UserRole + 1


class ResultsDock(QgsDockWidget):
    """Signals carry user actions to the controller; nothing here calls the engine."""

    indexDirChanged = pyqtSignal(str)
    hitActivated = pyqtSignal(int)  # rank
    clearRequested = pyqtSignal()
    saveRequested = pyqtSignal(str)  # .gpkg path

    def __init__(self, find_action: QAction, parent: QWidget | None = None):
        super().__init__("rsir: similar places", parent)
        self.setObjectName("rsirResultsDock")
        body = QWidget(self)
        layout = QVBoxLayout(body)

        self.index_widget = QgsFileWidget(body)
        self.index_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.index_widget.setDialogTitle("Index folder")
        self.index_widget.fileChanged.connect(self._on_index_changed)
        self.index_label = QLabel("", body)
        self.index_label.setWordWrap(True)
        self.index_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        draw = QToolButton(body)
        draw.setDefaultAction(find_action)
        draw.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        draw_row = QHBoxLayout()
        draw_row.addWidget(draw)
        hint = QLabel("then drag a box on the map", body)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: palette(mid)")
        draw_row.addWidget(hint, 1)

        self.k_spin = QSpinBox(body)
        self.k_spin.setRange(1, 500)
        self.score_spin = QDoubleSpinBox(body)
        self.score_spin.setRange(0.0, 1.0)
        self.score_spin.setSingleStep(0.05)
        self.score_spin.setDecimals(2)
        self.score_spin.setSpecialValueText("none")
        self.tta_check = QCheckBox("Rotation TTA (query 4x slower, rotation-robust)", body)
        self.overlap_check = QCheckBox("Exclude tiles overlapping the query box", body)
        form = QFormLayout()
        form.addRow("Index", self.index_widget)
        form.addRow("", self.index_label)
        form.addRow("Hits (k)", self.k_spin)
        form.addRow("Min. score", self.score_spin)
        form.addRow(self.tta_check)
        form.addRow(self.overlap_check)

        self.status_label = QLabel("", body)
        self.status_label.setWordWrap(True)
        self.hit_list = QListWidget(body)
        self.hit_list.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.hit_list.setSpacing(2)
        self.hit_list.setUniformItemSizes(True)
        self.hit_list.setTextElideMode(Qt.ElideMiddle)  # long raster names keep their start and end
        self.hit_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # elide to the width instead
        self.hit_list.itemClicked.connect(self._on_item_clicked)
        self.hit_list.itemActivated.connect(self._on_item_clicked)

        self.clear_button = QPushButton("Clear", body)
        self.clear_button.clicked.connect(self.clearRequested)
        self.save_button = QPushButton("Save to GeoPackage...", body)
        self.save_button.clicked.connect(self._on_save_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)

        layout.addLayout(draw_row)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addWidget(self.hit_list, 1)
        layout.addLayout(buttons)
        self.setWidget(body)

        self._load_settings()
        for signal in (self.k_spin.valueChanged, self.score_spin.valueChanged,
                       self.tta_check.toggled, self.overlap_check.toggled):
            signal.connect(self._save_settings)
        self._set_has_results(False)

    # What the controller reads and shows -------------------------------------------------

    def search_settings(self) -> SearchSettings:
        return SearchSettings(k=self.k_spin.value(), min_score=round(self.score_spin.value(), 3),
                              tta=self.tta_check.isChecked(), exclude_overlap=self.overlap_check.isChecked())

    def index_dir(self) -> str:
        return self.index_widget.filePath()

    def set_index_dir(self, path: str | Path) -> None:
        """Show `path` without emitting indexDirChanged (the controller already knows it)."""
        self.index_widget.blockSignals(True)
        self.index_widget.setFilePath(str(path))
        self.index_widget.blockSignals(False)

    def set_index_info(self, text: str, details: str = "") -> None:
        self.index_label.setText(text)
        self.index_label.setToolTip(details or text)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_hits(self, outcome) -> None:
        """List the hits of a SearchOutcome, best first, with thumbnails where they could be read."""
        self.hit_list.clear()
        placeholder = QPixmap(THUMBNAIL_PX, THUMBNAIL_PX)
        placeholder.fill(Qt.lightGray)
        for hit in outcome.result.hits:
            rgb = outcome.thumbnails.get(hit.rank)
            pixmap = QPixmap.fromImage(to_qimage(rgb)) if rgb is not None else placeholder
            item = QListWidgetItem(QIcon(pixmap), f"#{hit.rank}   score {hit.score:.3f}\n{Path(hit.raster).name}")
            item.setToolTip(f"{hit.raster}\nwindow col {hit.window[0]}, row {hit.window[1]}, "
                            f"{hit.window[2]} x {hit.window[3]} px")
            item.setData(RANK_ROLE, hit.rank)
            self.hit_list.addItem(item)
        self._set_has_results(bool(outcome.result.hits))

    def clear_hits(self) -> None:
        self.hit_list.clear()
        self._set_has_results(False)

    # Slots: user actions become signals ---------------------------------------------------

    def _on_index_changed(self, path: str) -> None:
        self.indexDirChanged.emit(path)

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        self.hitActivated.emit(int(item.data(RANK_ROLE)))

    def _on_save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save hits", "rsir_hits.gpkg", "GeoPackage (*.gpkg)")
        if path:
            self.saveRequested.emit(path if path.lower().endswith(".gpkg") else path + ".gpkg")

    def _save_settings(self, *_args) -> None:
        save_search_settings(self.search_settings())

    def _load_settings(self) -> None:
        values = load_search_settings()
        self.k_spin.setValue(values.k)
        self.score_spin.setValue(values.min_score)
        self.tta_check.setChecked(values.tta)
        self.overlap_check.setChecked(values.exclude_overlap)

    def _set_has_results(self, has: bool) -> None:
        self.clear_button.setEnabled(has)
        self.save_button.setEnabled(has)
