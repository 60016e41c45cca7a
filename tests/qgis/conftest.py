"""Fixtures for tests in real QGIS (pytest-qgis): the plugin loaded into the stub iface, real
rasters from tests/data as layers, and a small index built with the real engine.

The model is the session's `tiny_model` (tests/conftest.py): a real ONNX model (a ResNet-18 layout at
1/16 width) with 64 px input, so builds of a few hundred tiles take seconds on two cores.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer

DATA = Path(__file__).resolve().parent.parent / "data"
TOWN = DATA / "oam_town_1024.tif"  # real 0.1 m aerial imagery, EPSG:3395 (see tests/data/README.md)
TILE = 64
MAP_CRS = "EPSG:3857"  # differs from the raster's EPSG:3395, so every test crosses a reprojection


@pytest.fixture(scope="session")
def town_half(tmp_path_factory) -> Path:
    """The left half (512 x 1024 px) of the real sample, as its own GeoTIFF."""
    import rasterio
    from rasterio.windows import Window

    path = tmp_path_factory.mktemp("rasters") / "town_left.tif"
    with rasterio.open(TOWN) as src:
        window = Window(0, 0, 512, 1024)
        profile = src.profile | {"width": 512, "height": 1024, "transform": src.window_transform(window),
                                 "compress": "deflate", "photometric": "rgb"}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return path


@pytest.fixture(scope="session")
def town_full(tmp_path_factory) -> Path:
    """A private copy of the whole sample (builds lock and fingerprint files; tests/data stays read-only)."""
    path = tmp_path_factory.mktemp("rasters_full") / "town_full.tif"
    shutil.copy(TOWN, path)
    return path


@pytest.fixture(scope="session")
def town_index(tmp_path_factory, tiny_model, town_half) -> Path:
    """An index of `town_half` with 64 px tiles every 32 px, built by the engine (not by the plugin)."""
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    index_dir = tmp_path_factory.mktemp("index") / "town_index"
    build_index(BuildParams(index_dir=index_dir, rasters=(town_half,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=TILE, stride_px=TILE // 2)))
    return index_dir


@pytest.fixture
def map_crs() -> str:
    return MAP_CRS


@pytest.fixture
def project(qgis_new_project, qgis_canvas, qgis_parent) -> QgsProject:
    """An empty project whose map canvas uses MAP_CRS, in a shown (offscreen) main window.

    Unshown, the canvas viewport keeps Qt's default 98 x 28 px and screen-to-map conversions
    would be meaningless.
    """
    qgis_parent.show()
    QgsApplication.processEvents()
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem(MAP_CRS))
    qgis_new_project.setCrs(QgsCoordinateReferenceSystem(MAP_CRS))
    return qgis_new_project


@pytest.fixture
def town_layer(project, qgis_canvas, town_half) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(town_half), "town left", "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    qgis_canvas.setLayers([layer])
    qgis_canvas.setExtent(qgis_canvas.mapSettings().layerExtentToOutputExtent(layer, layer.extent()))
    qgis_canvas.refresh()
    return layer


@pytest.fixture
def plugin(qgis_iface, project):
    """The plugin loaded the way QGIS loads it: classFactory, initGui ... unload."""
    import rsir_qgis_plugin

    loaded = rsir_qgis_plugin.classFactory(qgis_iface)
    loaded.initGui()
    yield loaded
    loaded.unload()
    QgsApplication.processEvents()


SEARCH_TIMEOUT_MS = 60_000


def _drag_on_canvas(canvas, tool, start, end) -> None:
    """Press at `start`, move and release at `end` (screen pixels), as real QgsMapMouseEvents."""
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    steps = ((QEvent.Type.MouseButtonPress, start, tool.canvasPressEvent),
             (QEvent.Type.MouseMove, end, tool.canvasMoveEvent),
             (QEvent.Type.MouseButtonRelease, end, tool.canvasReleaseEvent))
    left = Qt.MouseButton.LeftButton
    for kind, (x, y), handler in steps:
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else left
        handler(QgsMapMouseEvent(canvas, kind, QPoint(x, y), left, buttons, Qt.KeyboardModifier.NoModifier))


@pytest.fixture
def search_by_drag(plugin, qgis_canvas, qtbot):
    """Drag a box with the plugin's map tool and wait for the search: returns the SearchOutcome."""

    def run(start, end):
        if qgis_canvas.mapTool() is not plugin.map_tool:
            plugin.find_action.trigger()
        with qtbot.waitSignal(plugin.search.searchFinished, timeout=SEARCH_TIMEOUT_MS) as blocker:
            _drag_on_canvas(qgis_canvas, plugin.map_tool, start, end)
        return blocker.args[0]

    return run


@pytest.fixture
def searched(plugin, town_layer, town_index, qgis_canvas, search_by_drag):
    """The plugin after a user drew a box on the raster with its map tool: (plugin, SearchOutcome), 6 hits."""
    plugin.search.show_index(town_index)
    plugin.dock.k_spin.setValue(6)
    plugin.dock.overlap_check.setChecked(True)
    plugin.find_action.trigger()
    assert qgis_canvas.mapTool() is plugin.map_tool
    # A box in the upper middle of the raster (the canvas shows the raster's whole height).
    return plugin, search_by_drag((270, 120), (330, 180))


@pytest.fixture
def truncated(tmp_path, town_half) -> list[Path]:
    """Two real GeoTIFFs cut short: headers intact, so they open, and reading their pixels fails midway."""
    paths = []
    for name, fraction in (("cut_a.tif", 2), ("cut_b.tif", 3)):
        path = tmp_path / name
        shutil.copy(TOWN, path)
        os.truncate(path, path.stat().st_size // fraction)
        paths.append(path)
    return paths


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """QgsSettings of a test go to a throw-away file, never to the developer's QGIS profile."""
    from qgis.core import QgsSettings
    from qgis.PyQt.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QgsSettings().clear()
    yield


@pytest.fixture
def provider(qgis_processing):
    """rsir's Processing provider registered in QGIS's registry for one test."""
    from rsir_qgis_plugin.processing.provider import RsirProvider

    registry = QgsApplication.processingRegistry()
    provider = RsirProvider()
    assert registry.addProvider(provider)
    yield provider
    registry.removeProvider(provider)
