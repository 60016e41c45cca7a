"""The results dock docked in a real main window: narrow enough to sit beside other panels, and every
hit's thumbs up/down visible and clickable at the dock's default width (issue 19, items 7 and 15)."""
from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QPoint, QRect, Qt
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QDockWidget, QMainWindow, QTextEdit, QWidget

from rsir_qgis_plugin.labels.layer import find_labels_layer

LONG_NAME = "naip_m_3807708_ne_18_060_20181110_20190212_clipped_to_the_study_area.tif"


@pytest.fixture
def window(plugin, qgis_parent):
    """A real main window with a map-sized central widget, the plugin's dock in its right dock area
    as QGIS puts it there (the test iface's addDockWidget docks nothing)."""
    main = QMainWindow()
    central = QWidget(main)
    central.setMinimumSize(600, 400)
    main.setCentralWidget(central)
    main.resize(1400, 900)
    main.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, plugin.dock)
    main.show()
    plugin.dock.show()
    QgsApplication.processEvents()
    yield main
    main.removeDockWidget(plugin.dock)
    plugin.dock.setParent(qgis_parent)
    main.deleteLater()


@pytest.fixture
def docked(plugin, window):
    return plugin


@pytest.fixture
def long_named_raster(tmp_path, town_half):
    """The town raster under a long file name, as real scenes are named."""
    import shutil

    path = tmp_path / LONG_NAME
    shutil.copy(town_half, path)
    return path


def visible_in_viewport(widget, view) -> bool:
    """Wholly inside the list's viewport, and not clipped by any parent (the dock's own scroll area)."""
    top_left = widget.mapTo(view.viewport(), QPoint(0, 0))
    inside = view.viewport().rect().contains(QRect(top_left, widget.size()))
    return inside and widget.visibleRegion().boundingRect() == widget.rect()


def test_dock_minimum_size_fits_beside_other_panels(docked):
    dock = docked.dock
    hint = dock.minimumSizeHint()
    assert hint.height() < 300, f"the dock asks for {hint.height()} px of height at least"
    assert hint.width() <= 300, f"the dock asks for {hint.width()} px of width at least"


def test_dock_stays_usable_when_short(docked, window):
    """With other panels in the same column the dock gets little height: its content scrolls and the
    index line keeps its whole height instead of being squeezed."""
    dock = docked.dock
    other = QDockWidget("Processing Toolbox", window)
    other.setWidget(QTextEdit(other))
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, other)
    window.splitDockWidget(other, dock, Qt.Orientation.Vertical)
    window.resizeDocks([other, dock], [700, 200], Qt.Orientation.Vertical)
    QgsApplication.processEvents()
    try:
        assert dock.height() <= 260
        label = dock.index_label
        assert label.height() >= label.heightForWidth(label.width()) > 0
        assert window.height() == 900, "the main window grew"
    finally:
        window.removeDockWidget(other)
        other.deleteLater()


def test_thumbs_are_visible_and_clickable_at_the_default_width(docked, window, long_named_raster,
                                                               tiny_model, tmp_path, qgis_canvas,
                                                               search_by_drag, qtbot):
    from qgis.core import QgsRasterLayer

    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    index_dir = tmp_path / "index"
    build_index(BuildParams(index_dir=index_dir, rasters=(long_named_raster,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=64, stride_px=32)))
    layer = QgsRasterLayer(str(long_named_raster), "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    qgis_canvas.setLayers([layer])
    qgis_canvas.setExtent(qgis_canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent()))
    docked.search.show_index(index_dir)
    docked.dock.k_spin.setValue(5)
    search_by_drag((270, 120), (330, 180))
    dock = docked.dock
    QgsApplication.processEvents()

    for width in (dock.width(), 300):  # as the main window gave it, and a narrow panel
        window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        QgsApplication.processEvents()
        assert abs(dock.width() - width) <= 2
        view = dock.hit_list
        assert view.horizontalScrollBar().maximum() == 0 or view.horizontalScrollBar().isVisible()
        row = dock.hit_row(1)
        view.scrollToItem(view.item(0))
        QgsApplication.processEvents()
        for button in (row.up_button, row.down_button):
            assert button.isVisible() and visible_in_viewport(button, view), (
                f"thumb at {button.mapTo(view.viewport(), QPoint(0, 0))} outside the "
                f"{view.viewport().width()} px list at dock width {dock.width()}")
        assert row.text_label.toolTip().endswith(LONG_NAME) or LONG_NAME in view.item(0).toolTip()

    assert dock.scroll.horizontalScrollBar().maximum() == 0, "the dock's content is wider than 300 px"
    row = dock.hit_row(1)
    QTest.mouseClick(row.up_button, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     row.up_button.rect().center())
    assert row.label() == "positive"
    assert find_labels_layer(QgsProject.instance()) is not None
    QTest.mouseClick(row.down_button, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     row.down_button.rect().center())
    assert row.label() == "negative"
