"""Draw the plugin's icons with QPainter (no image editor, reproducible).

    .venv/bin/python scripts/make_icons.py

Writes rsir_qgis_plugin/icon.png (plugin manager, dock, Processing provider) and the action
icons in rsir_qgis_plugin/gui/icons/. Shapes are bold and few so they stay legible at 16-24 px.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.PyQt.QtCore import QPointF, QRectF, Qt
from qgis.PyQt.QtGui import (
    QBrush,
    QColor,
    QGuiApplication,
    QImage,
    QLinearGradient,
    QPainter,
    QPen,
)

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64
QUERY = QColor(230, 0, 126)  # the query box colour used on the map as well
MATCH = QColor(255, 153, 0)
TEAL = QColor(22, 94, 118)
# Aerial-looking tile colours: fields, forest, bare soil, water.
TILES = ["#8fa65b", "#5f7f3c", "#c2a878", "#6f8f4a", "#4d6b8a", "#a7b56e", "#b89b6a", "#7a9a50", "#5d7c3a"]


def canvas() -> tuple[QImage, QPainter]:
    image = QImage(SIZE, SIZE, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    return image, painter


def plugin_icon() -> QImage:
    image, p = canvas()
    gradient = QLinearGradient(0, 0, 0, SIZE)
    gradient.setColorAt(0, QColor(30, 112, 138))
    gradient.setColorAt(1, QColor(16, 70, 90))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(gradient))
    p.drawRoundedRect(QRectF(1, 1, SIZE - 2, SIZE - 2), 10, 10)
    cell, gap, origin = 16, 2, 7
    for i, colour in enumerate(TILES):
        row, col = divmod(i, 3)
        p.setBrush(QColor(colour))
        p.drawRect(QRectF(origin + col * (cell + gap), origin + row * (cell + gap), cell, cell))
    outline = QPen(QUERY, 3.2)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(outline)
    p.drawRect(QRectF(origin - 1, origin - 1, cell + 2, cell + 2))
    p.setPen(QPen(MATCH, 3.2))
    for row, col in ((1, 2), (2, 1)):
        p.drawRect(QRectF(origin + col * (cell + gap) - 1, origin + row * (cell + gap) - 1, cell + 2, cell + 2))
    p.end()
    return image


def find_icon() -> QImage:
    image, p = canvas()
    pen = QPen(QUERY, 5, Qt.PenStyle.CustomDashLine)
    pen.setDashPattern([2.2, 1.2])
    p.setPen(pen)
    p.setBrush(QColor(230, 0, 126, 45))
    p.drawRect(QRectF(5, 5, 38, 32))
    # Magnifier: ring and handle.
    p.setPen(QPen(QColor(40, 40, 40), 6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.setBrush(QColor(255, 255, 255, 200))
    p.drawEllipse(QPointF(38, 38), 13, 13)
    p.drawLine(QPointF(47.5, 47.5), QPointF(58, 58))
    p.end()
    return image


def build_icon() -> QImage:
    image, p = canvas()
    # A stack of three tile layers: rasters cut into tiles and embedded into an index.
    for k, shade in enumerate((150, 185, 225)):
        top = 38 - k * 13
        poly = [QPointF(32, top - 12), QPointF(58, top), QPointF(32, top + 12), QPointF(6, top)]
        p.setPen(QPen(TEAL.darker(130), 2.5))
        p.setBrush(QColor(int(TEAL.red() * shade / 150), min(255, int(TEAL.green() * shade / 150)),
                          min(255, int(TEAL.blue() * shade / 150))))
        p.drawPolygon(*poly)
    # Grid lines on the top layer.
    p.setPen(QPen(QColor(255, 255, 255, 220), 1.8))
    top = 38 - 2 * 13
    for t in (1 / 3, 2 / 3):
        p.drawLine(QPointF(32 - 26 * t, top - 12 + 12 * t), QPointF(58 - 26 * t, top + 12 * t))
        p.drawLine(QPointF(32 + 26 * t, top - 12 + 12 * t), QPointF(6 + 26 * t, top + 12 * t))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(MATCH)
    p.drawEllipse(QPointF(52, 52), 9, 9)
    p.setPen(QPen(Qt.GlobalColor.white, 3, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawLine(QPointF(52, 47), QPointF(52, 57))
    p.drawLine(QPointF(47, 52), QPointF(57, 52))
    p.end()
    return image


def compare_icon() -> QImage:
    image, p = canvas()
    # Compare dates: the same tile at two dates, a block of it changed (magenta) at the later one, an arrow.
    for left, top in ((4, 6), (32, 26)):
        p.setPen(QPen(QColor(40, 40, 40), 2.5))
        p.setBrush(QColor(TILES[0]))
        p.drawRoundedRect(QRectF(left, top, 28, 28), 3, 3)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QUERY)
    p.drawRect(QRectF(39, 33, 14, 14))
    p.setPen(QPen(QColor(40, 40, 40), 4, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.drawLine(QPointF(12, 40), QPointF(12, 54))
    p.drawLine(QPointF(12, 54), QPointF(24, 54))
    p.drawLine(QPointF(24, 54), QPointF(19, 49))
    p.drawLine(QPointF(24, 54), QPointF(19, 59))
    p.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv)  # QPainter on QImage needs one
    icons = ROOT / "rsir_qgis_plugin" / "gui" / "icons"
    icons.mkdir(parents=True, exist_ok=True)
    outputs = {ROOT / "rsir_qgis_plugin" / "icon.png": plugin_icon(),
               icons / "find.png": find_icon(), icons / "build.png": build_icon(),
               icons / "compare.png": compare_icon()}
    for path, image in outputs.items():
        if not image.save(str(path)):
            print(f"could not write {path}", file=sys.stderr)
            return 1
        print(path.relative_to(ROOT))
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
