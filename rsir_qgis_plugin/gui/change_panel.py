"""The changes panel: the places of a search through time, each with its before and after thumbnails side by
side, rank, score and the two rasters. A click on a place shows it on the map (the controller does that).

Shows what it is given; nothing here calls the engine."""
from __future__ import annotations

from pathlib import Path

from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QSize, Qt, pyqtSignal
from qgis.PyQt.QtGui import QPixmap
from qgis.PyQt.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..thumbnail_pixels import THUMBNAIL_PX
from .dock import ask_search_name
from .hit_row import ElidedLabel
from .thumbnails import to_qimage

RANK_ROLE = Qt.ItemDataRole.UserRole + 1
SCORE_WORDS = {"change": "change", "unusual": "unusual change", "cosine": "like the example",
               "probability": "probability"}


class ChangeRow(QWidget):
    """Before and after thumbnails side by side, then rank, score and the rasters' names."""

    def __init__(self, before: QPixmap | None, after: QPixmap | None, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 2, 2, 2)
        self.before_label = self._thumbnail(before, "before")
        self.after_label = self._thumbnail(after, "after")
        self.text_label = ElidedLabel(text, self)
        self.text_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.before_label)
        row.addWidget(self.after_label)
        row.addWidget(self.text_label, 1)

    def _thumbnail(self, pixmap: QPixmap | None, date: str) -> QLabel:
        label = QLabel(self)
        label.setFixedSize(THUMBNAIL_PX, THUMBNAIL_PX)
        label.setToolTip(date.capitalize())
        if pixmap is not None:
            label.setPixmap(pixmap)
        else:  # unreadable now: say so where the picture would be
            label.setText(f"{date}: not readable")
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: #d0d0d0; color: #303030")
        return label


class ChangesPanel(QgsDockWidget):
    placeActivated = pyqtSignal(int)  # rank
    clearRequested = pyqtSignal()
    saveSearchRequested = pyqtSignal(str)  # the name of a standing search (core/standing_change.py)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("rsir: changes", parent)
        self.setObjectName("rsirChangesDock")
        body = QWidget(self)
        self.status_label = QLabel("", body)
        self.status_label.setWordWrap(True)
        self.place_list = QListWidget(body)
        self.place_list.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.place_list.itemClicked.connect(self._on_clicked)
        self.place_list.itemActivated.connect(self._on_clicked)
        self.clear_button = QPushButton("Clear", body)
        self.clear_button.setToolTip("Remove the places from the list and the 'rsir changes' layer")
        self.clear_button.clicked.connect(self.clearRequested)
        self.save_search_button = QPushButton("Save search...", body)
        self.save_search_button.setToolTip("Keep this search by change in the index folder: each index build then "
                                           "ranks the pairs of dates new to it (a raster indexed later over one "
                                           "it has seen) and shows their changes like it as new hits")
        self.save_search_button.setEnabled(False)  # a search by change example shown
        self.save_search_button.clicked.connect(self._on_save_search_clicked)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.save_search_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.status_label)
        layout.addWidget(self.place_list, 1)
        layout.addLayout(buttons)
        self.setWidget(body)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_changes(self, outcome) -> None:
        """One row a place of a ChangeOutcome (change_requests.py); thumbnails made here, on the UI thread."""
        self.place_list.clear()
        self.save_search_button.setEnabled(outcome.result.scorer is not None)
        words = SCORE_WORDS.get(outcome.result.scoring, outcome.result.scoring)
        for change in outcome.result.hits:
            before, after = outcome.thumbnails.get(change.rank, (None, None))
            text = (f"#{change.rank}  {words} {change.score:.3f}\n"
                    f"{Path(change.before).name} \u2192 {Path(change.after).name}")
            row = ChangeRow(_pixmap(before), _pixmap(after), text, self.place_list)
            row.setToolTip(f"{change.before}\n\u2192 {change.after}")
            item = QListWidgetItem(self.place_list)
            item.setData(RANK_ROLE, change.rank)
            item.setSizeHint(row.sizeHint())
            self.place_list.setItemWidget(item, row)

    def clear_places(self) -> None:
        self.place_list.clear()
        self.save_search_button.setEnabled(False)
        self.set_status("")

    def rows(self) -> list[ChangeRow]:
        return [self.place_list.itemWidget(self.place_list.item(i)) for i in range(self.place_list.count())]

    def _on_clicked(self, item: QListWidgetItem) -> None:
        self.placeActivated.emit(int(item.data(RANK_ROLE)))

    def _on_save_search_clicked(self) -> None:
        name = ask_search_name(self)
        if name:
            self.saveSearchRequested.emit(name)


def _pixmap(rgb) -> QPixmap | None:
    return None if rgb is None else QPixmap.fromImage(to_qimage(rgb))
