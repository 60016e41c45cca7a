"""The map tool that draws boxes: press, drag, release; Esc or right click cancels.

A plain drag is a query box (a new search). With a modifier held at release the box is a label
for relevance feedback instead: Shift adds a positive box, Ctrl (Cmd on macOS) a negative one.
Both reach the tool: the canvas only keeps Shift-drags for itself with tools flagged
AllowZoomRect, which this one is not, and Alt-drag is taken by many Linux window managers.
"""
from __future__ import annotations

from qgis.core import Qgis, QgsCoordinateReferenceSystem, QgsGeometry, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

# A drag shorter than this (screen pixels) is a click, not a box: it draws nothing and says how to.
MIN_DRAG_PX = 4
TOO_SMALL_SECONDS = 8
BOX_COLOR = QColor(230, 0, 126)
POSITIVE_COLOR = QColor(0, 170, 60)
NEGATIVE_COLOR = QColor(220, 30, 30)
QUERY, POSITIVE, NEGATIVE = "query", "positive", "negative"
MODE_COLORS = {QUERY: BOX_COLOR, POSITIVE: POSITIVE_COLOR, NEGATIVE: NEGATIVE_COLOR}
MODE_VERBS = {QUERY: "search with", POSITIVE: "mark as a good example", NEGATIVE: "mark as a bad example"}


def drag_mode(modifiers: Qt.KeyboardModifier) -> str:
    """What a drag with these keys held means: Ctrl -> negative label, Shift -> positive, else query."""
    if modifiers & Qt.KeyboardModifier.ControlModifier:
        return NEGATIVE
    if modifiers & Qt.KeyboardModifier.ShiftModifier:
        return POSITIVE
    return QUERY


def too_small_text(width: int, height: int, mode: str) -> str:
    return (f"Box too small to {MODE_VERBS[mode]} ({width} x {height} screen pixels): hold the left button "
            "and drag a rectangle around the place; zoom in for a small object.")


class BoxMapTool(QgsMapTool):
    """Emits `boxDrawn(rectangle, crs)` for a query box and `boxLabelled(rectangle, crs, positive)`
    for a Shift-/Ctrl-drag, with the rectangle in the canvas (map) CRS."""

    boxDrawn = pyqtSignal(QgsRectangle, QgsCoordinateReferenceSystem)
    boxLabelled = pyqtSignal(QgsRectangle, QgsCoordinateReferenceSystem, bool)

    def __init__(self, canvas: QgsMapCanvas):
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self._band = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
        self._band.setWidth(2)
        self._set_mode(QUERY)
        self._start: QgsPointXY | None = None
        self._start_px = None
        self._switching = False  # inside activate() or deactivate(): see _switch()
        self._message = None  # the message-bar item of the last drag too small to be a box

    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.button() == Qt.MouseButton.RightButton:
            self._cancel()
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._start = event.mapPoint()
        self._start_px = event.pos()
        self._set_mode(drag_mode(event.modifiers()))
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is None:
            return
        self._set_mode(drag_mode(event.modifiers()))  # the colour says what the release will do
        self._band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(self._start, event.mapPoint())), None)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is None or event.button() != Qt.MouseButton.LeftButton:
            return
        start, start_px = self._start, self._start_px
        self._cancel()
        moved = event.pos() - start_px
        mode = drag_mode(event.modifiers())
        if abs(moved.x()) < MIN_DRAG_PX or abs(moved.y()) < MIN_DRAG_PX:
            self._say_too_small(abs(moved.x()), abs(moved.y()), mode)
            return
        self._close_message()
        box = QgsRectangle(start, event.mapPoint())
        box.normalize()
        crs = self.canvas().mapSettings().destinationCrs()
        if mode == QUERY:
            self.boxDrawn.emit(box, crs)
        else:
            self.boxLabelled.emit(box, crs, mode == POSITIVE)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self._cancel()
            event.accept()
        else:
            event.ignore()

    def activate(self) -> None:
        self._switch(super().activate)

    def deactivate(self) -> None:
        self._switch(super().deactivate, self._cancel)

    def _switch(self, base, *first) -> None:
        """Run QgsMapTool's activate/deactivate once, ignoring the calls it causes on this same tool.

        QgsMapTool checks or unchecks the tool's action; a slot on that action which sets or unsets
        this tool on the canvas (the plugin's) calls back into activate/deactivate while QGIS 3.22's
        QgsMapCanvas.setMapTool() is still switching. Taking the tool back after another one (the
        extent tool of a Processing dialog's "Draw on Canvas") then never ended: RecursionError, and
        QGIS's main window went away. A nested call changes nothing the outer one is not already doing.
        """
        if self._switching:
            return
        self._switching = True
        try:
            for step in first:
                step()
            base()
        finally:
            self._switching = False

    def release(self) -> None:
        """Remove the rubber band from the canvas; call before dropping the tool."""
        self._cancel()
        self.canvas().scene().removeItem(self._band)

    def _say_too_small(self, width: int, height: int, mode: str) -> None:
        """A click or a tremble is no box: say so in QGIS's message bar (one line at a time)."""
        text = too_small_text(width, height, mode)
        from qgis.utils import iface  # QGIS's interface; None outside QGIS (a bare canvas in a script)

        if iface is None:
            self.messageEmitted.emit(text, Qgis.MessageLevel.Info)
            return
        self._close_message()
        bar = iface.messageBar()
        self._message = bar.createMessage("rsir", text)
        bar.pushWidget(self._message, Qgis.MessageLevel.Info, TOO_SMALL_SECONDS)

    def _close_message(self) -> None:
        from qgis.utils import iface

        item, self._message = self._message, None
        if item is not None and iface is not None and not sip.isdeleted(item) \
                and item in iface.messageBar().items():
            iface.messageBar().popWidget(item)

    def _set_mode(self, mode: str) -> None:
        color = MODE_COLORS[mode]
        self._band.setStrokeColor(color)
        self._band.setFillColor(QColor(color.red(), color.green(), color.blue(), 40))

    def _cancel(self) -> None:
        self._start = None
        self._start_px = None
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        self._set_mode(QUERY)
