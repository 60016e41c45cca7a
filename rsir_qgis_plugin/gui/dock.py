"""The results dock: which index, search options, the hit list with thumbnails and thumbs
up/down, relevance feedback (Refine, save and load labels), clear and save.

The dock only collects what the user chose and shows what it is given; `SearchController`
runs searches and owns the layers.
"""
from __future__ import annotations

from pathlib import Path

from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap
from qgis.PyQt.QtWidgets import (
    QAction,
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
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
from ..thumbnail_pixels import THUMBNAIL_PX
from .thumbnails import to_qimage

RANK_ROLE = Qt.ItemDataRole.UserRole + 1
POSITIVE, NEGATIVE, UNLABELLED = "positive", "negative", ""
THUMB_COLORS = {True: QColor(0, 150, 50), False: QColor(210, 30, 30)}
FEEDBACK_HINT = ("Thumbs up/down mark hits. On the map (Find similar places on): Shift-drag adds a "
                 "positive box, Ctrl-drag (Cmd on macOS) a negative one. Refine searches again with "
                 "every label of the 'rsir labels' layer.")
FEEDBACK_HELP = (FEEDBACK_HINT + " The labels are that layer's features: edit them there (fields raster, "
                 "label = positive/negative), save them to a GeoPackage and load it again in a later "
                 "session. The first mark on a search's hits also labels its query box positive.")


def thumb_icon(up: bool, size: int = 22) -> QIcon:
    """A thumb (up or down), grey when off and coloured when on, painted here (QGIS has no such icon)."""
    icon = QIcon()
    for state, color in ((QIcon.State.Off, QColor(140, 140, 140)), (QIcon.State.On, THUMB_COLORS[up])):
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.scale(size / 24.0, size / 24.0)
        if not up:  # thumbs down is thumbs up upside down
            painter.translate(0, 24)
            painter.scale(1, -1)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(QRectF(2, 10, 4.5, 12), 1, 1)  # cuff
        painter.drawRoundedRect(QRectF(8, 10, 13, 12), 2.5, 2.5)  # fist
        thumb = QPainterPath(QPointF(8.5, 11))
        thumb.lineTo(11, 3.5)
        thumb.quadTo(13, 1, 15, 3.5)
        thumb.lineTo(14.5, 11)
        thumb.closeSubpath()
        painter.drawPath(thumb)
        painter.setPen(QPen(QColor(255, 255, 255, 170), 1.2))
        for y in (14, 17, 20):  # fingers
            painter.drawLine(QPointF(14, y), QPointF(20.5, y))
        painter.end()
        icon.addPixmap(pixmap, QIcon.Mode.Normal, state)
    return icon


class HitRow(QWidget):
    """One hit in the list: thumbnail, rank and score, and the thumbs up/down that label it.

    Transparent, so the list's selection shows through; a click outside the thumbs reaches the
    list (the hit is activated there)."""

    labelChanged = pyqtSignal(int, str)  # rank, 'positive' / 'negative' / '' (no label)

    def __init__(self, rank: int, pixmap: QPixmap, text: str, up_icon: QIcon, down_icon: QIcon,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.rank = rank
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 2, 2, 2)
        self.thumbnail = QLabel(self)
        self.thumbnail.setPixmap(pixmap)
        self.thumbnail.setFixedSize(THUMBNAIL_PX, THUMBNAIL_PX)
        self.text_label = QLabel(text, self)
        self.text_label.setTextFormat(Qt.TextFormat.PlainText)
        self.up_button = self._thumb(up_icon, "Like the query: a positive example for Refine")
        self.down_button = self._thumb(down_icon, "Not like the query: a negative example for Refine")
        self.up_button.toggled.connect(lambda on: self._on_toggled(self.up_button, on))
        self.down_button.toggled.connect(lambda on: self._on_toggled(self.down_button, on))
        thumbs = QVBoxLayout()
        thumbs.addStretch(1)
        thumbs.addWidget(self.up_button)
        thumbs.addWidget(self.down_button)
        thumbs.addStretch(1)
        row.addWidget(self.thumbnail)
        row.addWidget(self.text_label, 1)
        row.addLayout(thumbs)

    def label(self) -> str:
        if self.up_button.isChecked():
            return POSITIVE
        return NEGATIVE if self.down_button.isChecked() else UNLABELLED

    def set_label(self, label: str) -> None:
        """Show a label without emitting labelChanged (the controller already knows it)."""
        for button, value in ((self.up_button, POSITIVE), (self.down_button, NEGATIVE)):
            button.blockSignals(True)
            button.setChecked(label == value)
            button.blockSignals(False)

    def _thumb(self, icon: QIcon, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(icon)
        button.setIconSize(QSize(22, 22))
        button.setCheckable(True)
        button.setAutoRaise(True)
        button.setToolTip(tip)
        return button

    def _on_toggled(self, button: QToolButton, on: bool) -> None:
        other = self.down_button if button is self.up_button else self.up_button
        if on and other.isChecked():
            other.blockSignals(True)
            other.setChecked(False)
            other.blockSignals(False)
        self.labelChanged.emit(self.rank, self.label())


class ResultsDock(QgsDockWidget):
    """Signals carry user actions to the controller; nothing here calls the engine."""

    indexDirChanged = pyqtSignal(str)
    hitActivated = pyqtSignal(int)  # rank
    clearRequested = pyqtSignal()
    saveRequested = pyqtSignal(str)  # .gpkg path
    hitLabelled = pyqtSignal(int, str)  # rank, 'positive' / 'negative' / '' (label removed)
    refineRequested = pyqtSignal()
    saveLabelsRequested = pyqtSignal(str)  # .gpkg path
    loadLabelsRequested = pyqtSignal(str)  # .gpkg path

    def __init__(self, find_action: QAction, parent: QWidget | None = None):
        super().__init__("rsir: similar places", parent)
        self.setObjectName("rsirResultsDock")
        body = QWidget(self)
        layout = QVBoxLayout(body)

        self.index_widget = QgsFileWidget(body)
        self.index_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.index_widget.setDialogTitle("Index folder")
        self.index_widget.fileChanged.connect(self._on_index_changed)
        self.index_label = QLabel("", body)
        self.index_label.setWordWrap(True)
        self.index_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        draw = QToolButton(body)
        draw.setDefaultAction(find_action)
        draw.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
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
        # Long raster names keep their start and end, elided to the width instead of scrolling.
        self.hit_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.hit_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.hit_list.itemClicked.connect(self._on_item_clicked)
        self.hit_list.itemActivated.connect(self._on_item_clicked)
        self._up_icon, self._down_icon = thumb_icon(True), thumb_icon(False)

        feedback = QGroupBox("Relevance feedback", body)
        feedback_layout = QVBoxLayout(feedback)
        self.labels_label = QLabel("No labels yet.", feedback)
        self.labels_label.setWordWrap(True)
        self.refine_button = QPushButton("Refine", feedback)
        self.refine_button.setToolTip("Search again in the background with every label of the "
                                      "'rsir labels' layer (at least one positive)")
        self.refine_button.clicked.connect(self.refineRequested)
        self.save_labels_button = QPushButton("Save labels...", feedback)
        self.save_labels_button.setToolTip("Write the labels to a GeoPackage (layer rsir_labels); "
                                           "later marks go into that file")
        self.save_labels_button.clicked.connect(self._on_save_labels_clicked)
        self.load_labels_button = QPushButton("Load labels...", feedback)
        self.load_labels_button.setToolTip("Make the labels of a saved GeoPackage the labels again")
        self.load_labels_button.clicked.connect(self._on_load_labels_clicked)
        self.feedback_help = QLabel(FEEDBACK_HINT, feedback)
        self.feedback_help.setToolTip(FEEDBACK_HELP)
        self.feedback_help.setWordWrap(True)
        self.feedback_help.setStyleSheet("color: palette(mid)")
        feedback_buttons = QHBoxLayout()
        feedback_buttons.addWidget(self.refine_button)
        feedback_buttons.addStretch(1)
        feedback_buttons.addWidget(self.save_labels_button)
        feedback_buttons.addWidget(self.load_labels_button)
        feedback_layout.addWidget(self.labels_label)
        feedback_layout.addLayout(feedback_buttons)
        feedback_layout.addWidget(self.feedback_help)

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
        layout.addWidget(feedback)
        self.setWidget(body)

        self._load_settings()
        for signal in (self.k_spin.valueChanged, self.score_spin.valueChanged,
                       self.tta_check.toggled, self.overlap_check.toggled):
            signal.connect(self._save_settings)
        self._set_has_results(False)
        self.set_labels_info("No labels yet.", has_labels=False, can_refine=False)

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

    def show_hits(self, outcome, labels: dict[int, str] | None = None) -> None:
        """List the hits of a SearchOutcome, best first, with thumbnails where they could be read and
        the thumbs showing `labels` (rank -> 'positive'/'negative') of the hits already labelled."""
        self.hit_list.clear()
        labels = labels or {}
        # A refined search with enough labels ranks by a classifier's probability, not by cosine.
        score_name = "p" if getattr(outcome.result, "scoring", "cosine") == "probability" else "score"
        placeholder = QPixmap(THUMBNAIL_PX, THUMBNAIL_PX)
        placeholder.fill(Qt.GlobalColor.lightGray)
        for hit in outcome.result.hits:
            rgb = outcome.thumbnails.get(hit.rank)
            pixmap = QPixmap.fromImage(to_qimage(rgb)) if rgb is not None else placeholder
            text = f"#{hit.rank}   {score_name} {hit.score:.3f}\n{Path(hit.raster).name}"
            row = HitRow(hit.rank, pixmap, text, self._up_icon, self._down_icon)
            row.set_label(labels.get(hit.rank, UNLABELLED))
            row.labelChanged.connect(self.hitLabelled)
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.AccessibleTextRole, text)
            item.setToolTip(f"{hit.raster}\nwindow col {hit.window[0]}, row {hit.window[1]}, "
                            f"{hit.window[2]} x {hit.window[3]} px")
            item.setData(RANK_ROLE, hit.rank)
            item.setSizeHint(row.sizeHint())
            self.hit_list.addItem(item)
            self.hit_list.setItemWidget(item, row)
        self._set_has_results(bool(outcome.result.hits))

    def hit_row(self, rank: int) -> HitRow | None:
        for i in range(self.hit_list.count()):
            item = self.hit_list.item(i)
            if item.data(RANK_ROLE) == rank:
                return self.hit_list.itemWidget(item)
        return None

    def set_hit_labels(self, labels: dict[int, str]) -> None:
        """Show the labels (rank -> 'positive'/'negative'; others unlabelled) on the listed hits."""
        for i in range(self.hit_list.count()):
            item = self.hit_list.item(i)
            row = self.hit_list.itemWidget(item)
            if row is not None:
                row.set_label(labels.get(item.data(RANK_ROLE), UNLABELLED))

    def set_labels_info(self, text: str, has_labels: bool, can_refine: bool) -> None:
        self.labels_label.setText(text)
        self.save_labels_button.setEnabled(has_labels)
        self.refine_button.setEnabled(can_refine)

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

    def _on_save_labels_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", "rsir_labels.gpkg", "GeoPackage (*.gpkg)")
        if path:
            self.saveLabelsRequested.emit(path if path.lower().endswith(".gpkg") else path + ".gpkg")

    def _on_load_labels_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load labels", "", "GeoPackage (*.gpkg)")
        if path:
            self.loadLabelsRequested.emit(path)

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
