"""One hit in the results dock's list: thumbnail, thumbs up/down, rank, score and raster name.

The row fits a narrow dock: the thumbs come right after the thumbnail, and the text, last, is elided
to the width that is left (its whole text is in the tooltip), so no part of the row is ever clipped.
"""
from __future__ import annotations

from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from ..thumbnail_pixels import THUMBNAIL_PX

POSITIVE, NEGATIVE, UNLABELLED = "positive", "negative", ""
THUMB_COLORS = {True: QColor(0, 150, 50), False: QColor(210, 30, 30)}
TEXT_MIN_PX = 40  # the text shrinks to this (elided) before anything else would be clipped


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


class ElidedLabel(QLabel):
    """A plain-text label whose lines are elided in the middle to its width instead of widening the row.

    `text()` stays the whole text (for the accessible text and tests); only the painting is shortened."""

    def __init__(self, text: str, parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(TEXT_MIN_PX)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(TEXT_MIN_PX, super().minimumSizeHint().height())

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt)
        painter = QPainter(self)
        metrics = self.fontMetrics()
        lines = [metrics.elidedText(line, Qt.TextElideMode.ElideMiddle, self.contentsRect().width())
                 for line in self.text().split("\n")]
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(self.contentsRect(), int(self.alignment()), "\n".join(lines))
        painter.end()


class HitRow(QWidget):
    """One hit in the list: thumbnail, thumbs up/down that label it, rank, score and raster name.

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
        self.text_label = ElidedLabel(text, self)
        self.text_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
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
        row.addLayout(thumbs)
        row.addWidget(self.text_label, 1)

    def show_problem(self, text: str) -> None:
        """In place of the thumbnail: why there is none ('raster not found'), on grey."""
        self.thumbnail.setPixmap(QPixmap())
        self.thumbnail.setText(text)
        self.thumbnail.setWordWrap(True)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setStyleSheet("background: #d0d0d0; color: #303030")
        self.thumbnail.setToolTip(text.capitalize())

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
