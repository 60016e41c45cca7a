"""The map tool that draws the query box: press, drag, release; Esc or right click cancels."""
from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

# A drag shorter than this (screen pixels) is a click, not a box.
MIN_DRAG_PX = 4
BOX_COLOR = QColor(230, 0, 126)


class BoxMapTool(QgsMapTool):
    """Emits `boxDrawn(rectangle, crs)` with the rectangle in the canvas (map) CRS."""

    boxDrawn = pyqtSignal(QgsRectangle, QgsCoordinateReferenceSystem)

    def __init__(self, canvas: QgsMapCanvas):
        super().__init__(canvas)
        self.setCursor(Qt.CrossCursor)
        self._band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self._band.setStrokeColor(BOX_COLOR)
        self._band.setFillColor(QColor(BOX_COLOR.red(), BOX_COLOR.green(), BOX_COLOR.blue(), 40))
        self._band.setWidth(2)
        self._start: QgsPointXY | None = None
        self._start_px = None

    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.button() == Qt.RightButton:
            self._cancel()
            return
        if event.button() != Qt.LeftButton:
            return
        self._start = event.mapPoint()
        self._start_px = event.pos()
        self._band.reset(QgsWkbTypes.PolygonGeometry)

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is None:
            return
        self._band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(self._start, event.mapPoint())), None)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        if self._start is None or event.button() != Qt.LeftButton:
            return
        start, start_px = self._start, self._start_px
        self._cancel()
        moved = event.pos() - start_px
        if abs(moved.x()) < MIN_DRAG_PX or abs(moved.y()) < MIN_DRAG_PX:
            return
        box = QgsRectangle(start, event.mapPoint())
        box.normalize()
        self.boxDrawn.emit(box, self.canvas().mapSettings().destinationCrs())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key_Escape:
            self._cancel()
            event.accept()
        else:
            event.ignore()

    def deactivate(self) -> None:
        self._cancel()
        super().deactivate()

    def release(self) -> None:
        """Remove the rubber band from the canvas; call before dropping the tool."""
        self._cancel()
        self.canvas().scene().removeItem(self._band)

    def _cancel(self) -> None:
        self._start = None
        self._start_px = None
        self._band.reset(QgsWkbTypes.PolygonGeometry)

