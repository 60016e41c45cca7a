"""The box map tool driven by synthetic mouse events, and the box it gives in map and raster CRS."""
from __future__ import annotations

import sys

import pytest
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsRectangle
from qgis.gui import QgsMapMouseEvent, QgsMapToolPan
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent

from rsir_qgis_plugin.gui.map_tool import BoxMapTool
from rsir_qgis_plugin.layers import query_raster


def mouse(canvas, kind, x, y, button=Qt.MouseButton.LeftButton):
    buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else button
    return QgsMapMouseEvent(canvas, kind, QPoint(x, y), button, buttons, Qt.KeyboardModifier.NoModifier)


def drag(tool, canvas, start, end):
    tool.canvasPressEvent(mouse(canvas, QEvent.Type.MouseButtonPress, *start))
    middle = ((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
    tool.canvasMoveEvent(mouse(canvas, QEvent.Type.MouseMove, *middle))
    tool.canvasMoveEvent(mouse(canvas, QEvent.Type.MouseMove, *end))
    tool.canvasReleaseEvent(mouse(canvas, QEvent.Type.MouseButtonRelease, *end))


@pytest.fixture
def tool(qgis_canvas, town_layer):
    tool = BoxMapTool(qgis_canvas)
    qgis_canvas.setMapTool(tool)
    yield tool
    qgis_canvas.unsetMapTool(tool)
    tool.release()


def test_drag_emits_the_box_in_map_crs(tool, qgis_canvas, map_crs):
    emitted = []
    tool.boxDrawn.connect(lambda box, crs: emitted.append((QgsRectangle(box), QgsCoordinateReferenceSystem(crs))))
    # Dragged from lower right to upper left: the box must come out normalised all the same.
    drag(tool, qgis_canvas, (420, 380), (150, 120))

    assert len(emitted) == 1
    box, crs = emitted[0]
    assert crs.authid() == map_crs
    to_map = qgis_canvas.getCoordinateTransform()
    corner_a, corner_b = to_map.toMapCoordinates(150, 120), to_map.toMapCoordinates(420, 380)
    assert box.xMinimum() == pytest.approx(min(corner_a.x(), corner_b.x()))
    assert box.xMaximum() == pytest.approx(max(corner_a.x(), corner_b.x()))
    assert box.yMinimum() == pytest.approx(min(corner_a.y(), corner_b.y()))
    assert box.yMaximum() == pytest.approx(max(corner_a.y(), corner_b.y()))
    # 270 x 260 screen pixels at the canvas's scale.
    assert box.width() == pytest.approx(270 * qgis_canvas.mapUnitsPerPixel(), rel=1e-6)
    assert box.height() == pytest.approx(260 * qgis_canvas.mapUnitsPerPixel(), rel=1e-6)


def test_box_in_raster_crs_matches_an_independent_reprojection(tool, qgis_canvas, town_layer):
    from rasterio.warp import transform_bounds

    emitted = []
    tool.boxDrawn.connect(lambda box, crs: emitted.append((QgsRectangle(box), QgsCoordinateReferenceSystem(crs))))
    drag(tool, qgis_canvas, (200, 150), (400, 330))
    box, crs = emitted[0]

    found = query_raster(box, crs, [town_layer], QgsProject.instance().transformContext())
    assert found is not None
    layer, local = found
    assert layer is town_layer and layer.crs().authid() == "EPSG:3395"
    # PROJ through rasterio, not QGIS: the same box in the raster's CRS to a millimetre.
    expected = transform_bounds("EPSG:3857", "EPSG:3395", box.xMinimum(), box.yMinimum(), box.xMaximum(),
                                box.yMaximum(), densify_pts=21)
    got = (local.xMinimum(), local.yMinimum(), local.xMaximum(), local.yMaximum())
    assert got == pytest.approx(expected, abs=1e-3)
    assert town_layer.extent().contains(local)
    # Web Mercator and World Mercator differ: the conversion really happened.
    assert abs(local.yMinimum() - box.yMinimum()) > 1000


def test_rubber_band_follows_the_drag_and_clicks_or_escape_emit_nothing(tool, qgis_canvas):
    emitted = []
    tool.boxDrawn.connect(lambda box, crs: emitted.append(box))
    tool.canvasPressEvent(mouse(qgis_canvas, QEvent.Type.MouseButtonPress, 100, 100))
    tool.canvasMoveEvent(mouse(qgis_canvas, QEvent.Type.MouseMove, 300, 250))
    band = tool._band
    assert band.numberOfVertices() >= 4
    band_box = band.asGeometry().boundingBox()
    to_map = qgis_canvas.getCoordinateTransform()
    assert band_box.xMaximum() == pytest.approx(to_map.toMapCoordinates(300, 250).x())
    tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier))
    assert band.numberOfVertices() == 0
    tool.canvasReleaseEvent(mouse(qgis_canvas, QEvent.Type.MouseButtonRelease, 300, 250))
    drag(tool, qgis_canvas, (200, 200), (202, 201))  # a click with a tremble
    assert emitted == []


def test_box_outside_every_raster_finds_no_query_raster(qgis_canvas, town_layer, map_crs):
    far = QgsRectangle(0, 0, 100, 100)  # Gulf of Guinea, far from the sample
    assert query_raster(far, QgsCoordinateReferenceSystem(map_crs), [town_layer],
                        QgsProject.instance().transformContext()) is None


def _viewport_drag(canvas, start, end, modifiers):
    """A real drag on the canvas widget: the events go through QgsMapCanvas to the tool, as in QGIS."""
    from qgis.PyQt.QtTest import QTest

    viewport = canvas.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, modifiers, QPoint(*start))
    for t in (0.3, 0.6, 1.0):
        point = QPoint(int(start[0] + (end[0] - start[0]) * t), int(start[1] + (end[1] - start[1]) * t))
        QTest.mouseMove(viewport, point)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifiers, QPoint(*end))


@pytest.mark.parametrize("modifiers, positive", [
    (Qt.KeyboardModifier.ShiftModifier, True),
    (Qt.KeyboardModifier.ControlModifier, False),
    (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier, False),
])
def test_shift_and_ctrl_drags_are_labels_not_searches(tool, qgis_canvas, map_crs, modifiers, positive):
    drawn, labelled = [], []
    tool.boxDrawn.connect(lambda box, crs: drawn.append(QgsRectangle(box)))
    tool.boxLabelled.connect(lambda box, crs, pos: labelled.append((QgsRectangle(box), crs.authid(), pos)))
    extent = QgsRectangle(qgis_canvas.extent())
    _viewport_drag(qgis_canvas, (150, 120), (300, 260), modifiers)

    assert drawn == [] and len(labelled) == 1
    box, crs, pos = labelled[0]
    assert pos is positive and crs == map_crs
    to_map = qgis_canvas.getCoordinateTransform()
    a, b = to_map.toMapCoordinates(150, 120), to_map.toMapCoordinates(300, 260)
    assert (box.xMinimum(), box.yMaximum()) == pytest.approx((a.x(), a.y()))
    assert (box.xMaximum(), box.yMinimum()) == pytest.approx((b.x(), b.y()))
    # The canvas kept its extent: a Shift-drag did not become QGIS's zoom-to-rectangle.
    assert qgis_canvas.extent() == extent


def test_plain_drag_through_the_canvas_is_a_search_and_the_band_shows_the_mode(tool, qgis_canvas):
    from rsir_qgis_plugin.gui.map_tool import BOX_COLOR, NEGATIVE_COLOR, POSITIVE_COLOR

    drawn, labelled = [], []
    tool.boxDrawn.connect(lambda box, crs: drawn.append(QgsRectangle(box)))
    tool.boxLabelled.connect(lambda *args: labelled.append(args))
    _viewport_drag(qgis_canvas, (150, 120), (300, 260), Qt.KeyboardModifier.NoModifier)
    assert len(drawn) == 1 and labelled == []

    # While dragging, the rubber band is green for a positive box, red for a negative, magenta for a query.
    band = tool._band
    left = Qt.MouseButton.LeftButton
    tool.canvasPressEvent(QgsMapMouseEvent(qgis_canvas, QEvent.Type.MouseButtonPress, QPoint(100, 100),
                                           left, left, Qt.KeyboardModifier.ShiftModifier))
    assert band.strokeColor() == POSITIVE_COLOR
    tool.canvasMoveEvent(QgsMapMouseEvent(qgis_canvas, QEvent.Type.MouseMove, QPoint(200, 200),
                                          Qt.MouseButton.NoButton, left, Qt.KeyboardModifier.ControlModifier))
    assert band.strokeColor() == NEGATIVE_COLOR
    tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier))
    assert band.strokeColor() == BOX_COLOR and band.numberOfVertices() == 0


@pytest.fixture
def python_errors(monkeypatch):
    """Exceptions raised in Python code that C++ called (virtual methods, slots), by type.

    pytest-qt's own capture formats a traceback, which a RecursionError defeats; this hook only
    records the type, so it still works at the recursion limit.
    """
    seen: list[type] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(kind))
    return seen


def test_processing_draw_on_canvas_hands_the_find_tool_back_without_recursion(plugin, qgis_canvas, town_layer,
                                                                              python_errors):
    """Issue 19 item 3: the rsir tool active, a Processing extent parameter's "Draw on Canvas" (QGIS's
    own QgsExtentWidget and QgsMapToolExtent), a real drag, and QGIS gives the previous tool back."""
    from qgis.gui import QgsExtentWidget

    plugin.find_action.trigger()
    assert qgis_canvas.mapTool() is plugin.map_tool and plugin.find_action.isChecked()
    widget = QgsExtentWidget()
    widget.setMapCanvas(qgis_canvas)
    widget.setOutputExtentFromDrawOnCanvas()
    assert qgis_canvas.mapTool() is not plugin.map_tool and not plugin.find_action.isChecked()

    _viewport_drag(qgis_canvas, (150, 120), (300, 260), Qt.KeyboardModifier.NoModifier)

    assert python_errors == []
    assert widget.isValid() and not widget.outputExtent().isEmpty()
    assert qgis_canvas.mapTool() is plugin.map_tool and plugin.find_action.isChecked()

    # Plain switches both ways, and the Processing dialog closed while its tool was still active.
    pan = QgsMapToolPan(qgis_canvas)
    qgis_canvas.setMapTool(pan)
    assert not plugin.find_action.isChecked()
    plugin.find_action.trigger()
    assert qgis_canvas.mapTool() is plugin.map_tool and plugin.find_action.isChecked()
    widget.setOutputExtentFromDrawOnCanvas()
    widget.deleteLater()
    QgsApplication.processEvents()
    qgis_canvas.setMapTool(plugin.map_tool)
    assert qgis_canvas.mapTool() is plugin.map_tool and plugin.find_action.isChecked()
    plugin.find_action.trigger()  # unchecked: the tool leaves the canvas
    assert qgis_canvas.mapTool() is None and not plugin.find_action.isChecked()
    assert python_errors == []


@pytest.mark.parametrize("end, modifiers, verb", [
    ((202, 201), Qt.KeyboardModifier.NoModifier, "search with"),  # issue 19 item 5: a 2-pixel drag
    ((200, 200), Qt.KeyboardModifier.NoModifier, "search with"),  # a click
    ((203, 230), Qt.KeyboardModifier.ShiftModifier, "mark as a good example"),  # tall but 3 px wide
], ids=["2-pixel drag", "click", "3-pixel-wide Shift-drag"])
def test_a_drag_too_small_for_a_box_says_so_in_the_message_bar(tool, qgis_canvas, qgis_iface, end, modifiers,
                                                               verb):
    drawn = []
    tool.boxDrawn.connect(lambda box, crs: drawn.append(box))
    tool.boxLabelled.connect(lambda *args: drawn.append(args))
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    _viewport_drag(qgis_canvas, (200, 200), end, modifiers)

    assert drawn == []
    texts = [item.text() for item in bar.items()]
    assert len(texts) == 1
    assert texts[0].startswith(f"Box too small to {verb} ({end[0] - 200} x {end[1] - 200} screen pixels)")
    assert "drag a rectangle around the place" in texts[0]
    # A second tremble replaces the line rather than stacking another; a real box takes it away.
    _viewport_drag(qgis_canvas, (200, 200), end, modifiers)
    assert len(bar.items()) == 1
    _viewport_drag(qgis_canvas, (150, 120), (300, 260), modifiers)
    assert bar.items() == [] and len(drawn) == 1
