"""The results dock: which index, search options, the hit list with thumbnails and thumbs
up/down, relevance feedback (Refine, save and load labels), clear and save; saving the search as a
standing search, and the badge of the new hits a build found for the saved searches.

The dock only collects what the user chose and shows what it is given; `SearchController`
runs searches and owns the layers.
"""
from __future__ import annotations

from pathlib import Path

from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt.QtCore import QSize, Qt, pyqtSignal
from qgis.PyQt.QtGui import QPixmap
from qgis.PyQt.QtWidgets import (
    QAction,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..settings import SearchSettings, load_search_settings, save_search_settings
from ..thumbnail_pixels import THUMBNAIL_PX, thumbnail_problems
from .file_dialogs import ask_open_gpkg, ask_save_gpkg
from .hit_row import UNLABELLED, HitRow, thumb_icon
from .map_panel import MapPanel
from .review_panel import ReviewPanel
from .thumbnails import to_qimage

RANK_ROLE = Qt.ItemDataRole.UserRole + 1
MIN_HEIGHT_PX = 120  # the least the dock asks of its column; its content scrolls below that
FEEDBACK_HINT = ("Thumbs up/down mark hits. On the map (Find similar places on): Shift-drag adds a "
                 "positive box, Ctrl-drag (Cmd on macOS) a negative one. Refine searches again with "
                 "every label of the 'rsir labels' layer.")
FEEDBACK_HELP = (FEEDBACK_HINT + " The labels are that layer's features: edit them there (fields raster, "
                 "label = positive/negative), save them to a GeoPackage and load it again in a later "
                 "session. The first mark on a search's hits also labels its query box positive.")


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
    saveSearchRequested = pyqtSignal(str)  # the name of a standing search (core/standing.py)
    newHitsRequested = pyqtSignal()  # load the new hits the last build found as layers

    def __init__(self, find_action: QAction, parent: QWidget | None = None):
        super().__init__("rsir: similar places", parent)
        self.setObjectName("rsirResultsDock")
        body = QWidget(self)
        # Made in the order they are shown, which is also the keyboard focus order.
        self._make_index_widgets(body)
        draw_row = self._draw_row(body, find_action)
        form = self._options_form(body)
        self._make_hit_list(body)
        feedback = self._feedback_box(body)
        buttons = self._result_buttons(body)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(draw_row)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addWidget(self.new_hits_button)
        layout.addWidget(self.hit_list, 1)
        layout.addLayout(buttons)
        layout.addWidget(feedback)
        self.map_panel = MapPanel(self.index_dir, body)  # its own tasks: scoring, then the map file
        layout.addWidget(self.map_panel)
        self.review_panel = ReviewPanel(body)  # its own tasks: the sample, then the marked files
        layout.addWidget(self.review_panel)
        self.setWidget(self._scrolling(body))

        self._load_settings()
        for signal in (self.k_spin.valueChanged, self.score_spin.valueChanged,
                       self.tta_check.toggled, self.overlap_check.toggled, self.rerank_check.toggled):
            signal.connect(self._save_settings)
        self._set_has_results(False)
        self.set_labels_info("No labels yet.", has_labels=False, can_refine=False)

    # Building the dock, a part each -------------------------------------------------------

    def _make_index_widgets(self, body: QWidget) -> None:
        self.index_widget = QgsFileWidget(body)
        self.index_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.index_widget.setDialogTitle("Index folder")
        self.index_widget.fileChanged.connect(self._on_index_changed)
        self.index_label = QLabel("", body)
        self.index_label.setWordWrap(True)
        self.index_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    @staticmethod
    def _draw_row(body: QWidget, find_action: QAction) -> QHBoxLayout:
        """The Find similar places button, with what to do next."""
        draw = QToolButton(body)
        draw.setDefaultAction(find_action)
        draw.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        draw_row = QHBoxLayout()
        draw_row.addWidget(draw)
        hint = QLabel("then drag a box on the map", body)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: palette(mid)")
        draw_row.addWidget(hint, 1)
        return draw_row

    def _options_form(self, body: QWidget) -> QFormLayout:
        """The index folder and the search options (kept in QGIS settings)."""
        self.k_spin = QSpinBox(body)
        self.k_spin.setRange(1, 500)
        self.score_spin = QDoubleSpinBox(body)
        self.score_spin.setRange(0.0, 1.0)
        self.score_spin.setSingleStep(0.05)
        self.score_spin.setDecimals(2)
        self.score_spin.setSpecialValueText("none")
        # Short texts, the rest in tooltips: the dock must fit a narrow panel (its minimum width).
        self.tta_check = QCheckBox("Rotation TTA (4x slower)", body)
        self.tta_check.setToolTip("Embed the query as the mean of its four 90° rotations: "
                                  "4x slower, finds places whatever their orientation")
        self.overlap_check = QCheckBox("Exclude the query area", body)
        self.overlap_check.setToolTip("Exclude tiles overlapping the query box from the hits")
        self.rerank_check = QCheckBox("Re-rank by neighbours", body)
        self.rerank_check.setToolTip("Query expansion (αQE): search again with the query blended with its 10 "
                                     "best hits, and the index's DBA vectors where it has them. Off: rank by "
                                     "the query alone. Refine (relevance feedback) is never re-ranked.")
        form = QFormLayout()
        form.addRow("Index", self.index_widget)
        form.addRow("", self.index_label)
        form.addRow("Hits (k)", self.k_spin)
        form.addRow("Min. score", self.score_spin)
        form.addRow(self.tta_check)
        form.addRow(self.overlap_check)
        form.addRow(self.rerank_check)
        return form

    def _make_hit_list(self, body: QWidget) -> None:
        self.status_label = QLabel("", body)
        self.status_label.setWordWrap(True)
        self.hit_list = QListWidget(body)
        self.hit_list.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.hit_list.setSpacing(2)
        self.hit_list.setUniformItemSizes(True)
        # Long raster names keep their start and end, elided to the width instead of scrolling.
        self.hit_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.hit_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.hit_list.setMinimumHeight(THUMBNAIL_PX + 16)  # one hit, however short the panel
        self.hit_list.itemClicked.connect(self._on_item_clicked)
        self.hit_list.itemActivated.connect(self._on_item_clicked)
        self._up_icon, self._down_icon = thumb_icon(True), thumb_icon(False)

    def _feedback_box(self, body: QWidget) -> QGroupBox:
        """Relevance feedback: the labels so far, Refine, saving and loading labels, how to mark."""
        feedback = QGroupBox("Relevance feedback", body)
        feedback_layout = QVBoxLayout(feedback)
        feedback_layout.setContentsMargins(6, 6, 6, 6)
        self.labels_label = QLabel("No labels yet.", feedback)
        self.labels_label.setWordWrap(True)
        feedback_buttons, file_buttons = self._feedback_buttons(feedback)
        self.feedback_help = QLabel(FEEDBACK_HINT, feedback)
        self.feedback_help.setToolTip(FEEDBACK_HELP)
        self.feedback_help.setWordWrap(True)
        self.feedback_help.setStyleSheet("color: palette(mid)")
        feedback_layout.addWidget(self.labels_label)
        feedback_layout.addLayout(feedback_buttons)
        feedback_layout.addLayout(file_buttons)
        feedback_layout.addWidget(self.feedback_help)
        return feedback

    def _feedback_buttons(self, feedback: QGroupBox) -> tuple[QHBoxLayout, QHBoxLayout]:
        """(Refine, Save labels... and Load labels...) as two rows."""
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
        feedback_buttons = QHBoxLayout()
        feedback_buttons.addWidget(self.refine_button)
        feedback_buttons.addStretch(1)
        file_buttons = QHBoxLayout()
        file_buttons.addWidget(self.save_labels_button)
        file_buttons.addWidget(self.load_labels_button)
        file_buttons.addStretch(1)
        return feedback_buttons, file_buttons

    def _result_buttons(self, body: QWidget) -> QVBoxLayout:
        self.clear_button = QPushButton("Clear", body)
        self.clear_button.clicked.connect(self.clearRequested)
        self.save_button = QPushButton("Save hits...", body)
        self.save_button.setToolTip("Save the hits and the query box to a GeoPackage")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.save_search_button = QPushButton("Save search...", body)
        self.save_search_button.setToolTip("Keep this search in the index folder by name: every index build "
                                           "then searches the rasters it adds and shows their hits here")
        self.save_search_button.clicked.connect(self._on_save_search_clicked)
        # The badge, under the status line: hidden until a build finds new hits for a saved search.
        self.new_hits_button = QPushButton("", body)
        self.new_hits_button.setObjectName("rsirNewHits")
        self.new_hits_button.clicked.connect(self.newHitsRequested)
        self.new_hits_button.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.clear_button)
        row.addStretch(1)
        row.addWidget(self.save_button)
        standing = QHBoxLayout()  # a row of its own: the dock's default width holds two buttons a row
        standing.addStretch(1)
        standing.addWidget(self.save_search_button)
        buttons = QVBoxLayout()
        buttons.addLayout(row)
        buttons.addLayout(standing)
        return buttons

    def _scrolling(self, body: QWidget) -> QScrollArea:
        # The content scrolls instead of asking the main window for its whole height: beside other
        # panels the dock may be short (and QMainWindow grows past the screen for a tall minimum).
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(body)
        self.scroll.setMinimumHeight(MIN_HEIGHT_PX)
        return self.scroll

    # What the controller reads and shows -------------------------------------------------

    def search_settings(self) -> SearchSettings:
        return SearchSettings(k=self.k_spin.value(), min_score=round(self.score_spin.value(), 3),
                              tta=self.tta_check.isChecked(), exclude_overlap=self.overlap_check.isChecked(),
                              rerank=self.rerank_check.isChecked())

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
        problems = thumbnail_problems(outcome.result.hits, outcome.thumbnails)
        for hit in outcome.result.hits:
            rgb = outcome.thumbnails.get(hit.rank)
            pixmap = QPixmap.fromImage(to_qimage(rgb)) if rgb is not None else QPixmap()
            text = f"#{hit.rank}   {score_name} {hit.score:.3f}\n{Path(hit.raster).name}"
            row = HitRow(hit.rank, pixmap, text, self._up_icon, self._down_icon)
            row.set_label(labels.get(hit.rank, UNLABELLED))
            row.labelChanged.connect(self.hitLabelled)
            tip = (f"{hit.raster}\nwindow col {hit.window[0]}, row {hit.window[1]}, "
                   f"{hit.window[2]} x {hit.window[3]} px")
            if hit.rank in problems:
                row.show_problem(problems[hit.rank])
                tip = f"{problems[hit.rank].capitalize()}: {tip}"
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.AccessibleTextRole, text)
            item.setToolTip(tip)
            item.setData(RANK_ROLE, hit.rank)
            # As narrow as the row can be: the list lays it out to its own width (no sideways scroll).
            item.setSizeHint(QSize(row.minimumSizeHint().width(), row.sizeHint().height()))
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

    def set_new_hits(self, count: int, details: str = "") -> None:
        """The badge: 'New hits (3)' with the build's lines in its tooltip; hidden at 0."""
        self.new_hits_button.setText(f"New hits ({count})")
        self.new_hits_button.setToolTip((details + "\n" if details else "") + "Click to load them as layers")
        self.new_hits_button.setVisible(count > 0)

    def clear_hits(self) -> None:
        self.hit_list.clear()
        self._set_has_results(False)

    # Slots: user actions become signals ---------------------------------------------------

    def _on_index_changed(self, path: str) -> None:
        self.indexDirChanged.emit(path)

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        self.hitActivated.emit(int(item.data(RANK_ROLE)))

    def _on_save_clicked(self) -> None:
        path = ask_save_gpkg(self, "Save hits", "rsir_hits.gpkg")
        if path:
            self.saveRequested.emit(path)

    def _on_save_search_clicked(self) -> None:
        name = ask_search_name(self)
        if name:
            self.saveSearchRequested.emit(name)

    def _on_save_labels_clicked(self) -> None:
        path = ask_save_gpkg(self, "Save labels", "rsir_labels.gpkg")
        if path:
            self.saveLabelsRequested.emit(path)

    def _on_load_labels_clicked(self) -> None:
        path = ask_open_gpkg(self, "Load labels")
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
        self.rerank_check.setChecked(values.rerank)

    def _set_has_results(self, has: bool) -> None:
        self.clear_button.setEnabled(has)
        self.save_button.setEnabled(has)
        self.save_search_button.setEnabled(has)


def ask_search_name(parent: QWidget) -> str | None:
    """The name of a standing search, asked in a dialog (the dock's and the changes panel's Save search)."""
    name, accepted = QInputDialog.getText(parent, "Save search", "Name of the standing search (each index "
                                          "build then reports its new hits):")
    return name.strip() if accepted and name.strip() else None
