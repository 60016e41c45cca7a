"""The map tool that draws boxes: press, drag, release; Esc or right click cancels.

A plain drag is a query box (a new search). With a modifier held at release the box is a label
for relevance feedback instead: Shift adds a positive box, Ctrl (Cmd on macOS) a negative one.
Both reach the tool: the canvas only keeps Shift-drags for itself with tools flagged
AllowZoomRect, which this one is not, and Alt-drag is taken by many Linux window managers.
"""
from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

# A drag shorter than this (screen pixels) is a click, not a box.
MIN_DRAG_PX = 4
BOX_COLOR = QColor(230, 0, 126)
POSITIVE_COLOR = QColor(0, 170, 60)
NEGATIVE_COLOR = QColor(220, 30, 30)
QUERY, POSITIVE, NEGATIVE = "query", "positive", "negative"
MODE_COLORS = {QUERY: BOX_COLOR, POSITIVE: POSITIVE_COLOR, NEGATIVE: NEGATIVE_COLOR}


def drag_mode(modifiers: Qt.KeyboardModifier) -> str:
    """What a drag with these keys held means: Ctrl -> negative label, Shift -> positive, else query."""
    if modifiers & Qt.KeyboardModifier.ControlModifier:
        return NEGATIVE
    if modifiers & Qt.KeyboardModifier.ShiftModifier:
        return POSITIVE
    return QUERY


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
        if abs(moved.x()) < MIN_DRAG_PX or abs(moved.y()) < MIN_DRAG_PX:
            return
        box = QgsRectangle(start, event.mapPoint())
        box.normalize()
        crs = self.canvas().mapSettings().destinationCrs()
        mode = drag_mode(event.modifiers())
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

    def _set_mode(self, mode: str) -> None:
        color = MODE_COLORS[mode]
        self._band.setStrokeColor(color)
        self._band.setFillColor(QColor(color.red(), color.green(), color.blue(), 40))

    def _cancel(self) -> None:
        self._start = None
        self._start_px = None
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        self._set_mode(QUERY)
