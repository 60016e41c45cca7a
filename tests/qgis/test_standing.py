"""Standing searches in real QGIS: a search drawn on the map saved by the dock's "Save search..." (its real
name dialog), a build through the plugin, the summary line, the dock's badge, and the "New hits" layer."""
from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsProject
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QInputDialog

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.settings import BuildSettings
from tests.qgis.conftest import TILE, TOWN

BUILD_TIMEOUT_MS = 120_000


@pytest.fixture
def town_right(tmp_path) -> Path:
    """The right half (512 x 1024 px) of the real sample: other ground than town_half."""
    import rasterio
    from rasterio.windows import Window

    path = tmp_path / "town_right.tif"
    with rasterio.open(TOWN) as src:
        window = Window(512, 0, 512, 1024)
        profile = src.profile | {"width": 512, "height": 1024, "transform": src.window_transform(window),
                                 "compress": "deflate", "photometric": "rgb"}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return path


def answer_name_dialog(name: str) -> None:
    """Type `name` into the real QInputDialog the button opens, and press OK, once it is up."""
    def fill():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QInputDialog):
            QTimer.singleShot(50, fill)
            return
        dialog.setTextValue(name)
        dialog.accept()
    QTimer.singleShot(50, fill)


def test_save_a_search_then_a_build_shows_the_badge_and_the_new_hits_layer(
        plugin, town_layer, town_half, town_right, tiny_model, tmp_path, search_by_drag, qtbot):
    index_dir = tmp_path / "index"
    build_index(BuildParams(index_dir=index_dir, rasters=(town_half,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=TILE, stride_px=TILE // 2)))
    plugin.search.show_index(index_dir)
    plugin.dock.k_spin.setValue(5)
    outcome = search_by_drag((270, 120), (330, 180))
    assert outcome.result.hits and plugin.dock.save_search_button.isEnabled()
    assert plugin.dock.new_hits_button.isHidden()

    answer_name_dialog("parking lots")
    plugin.dock.save_search_button.click()
    saved = index_dir / "searches" / "parking lots.json"
    qtbot.waitUntil(saved.exists, timeout=30_000)

    params = BuildSettings(tile_size=TILE, stride=TILE // 2, model_path=str(tiny_model)).to_params(
        index_dir, [str(town_half), str(town_right)])
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
        plugin.build.start(params)
    assert ended.args == ["succeeded"]
    [report] = plugin.build.summary.standing
    assert report.problem is None and report.new_hits == 5
    assert "5 new hits for 'parking lots'" in plugin.build.outcome_item.text()

    badge = plugin.dock.new_hits_button
    assert not badge.isHidden() and badge.text() == "New hits (5)"
    assert "5 new hits for 'parking lots'" in badge.toolTip()
    badge.click()
    [layer] = QgsProject.instance().mapLayersByName("New hits: parking lots")
    assert layer.featureCount() == 5
    assert {feature["raster"] for feature in layer.getFeatures()} == {str(town_right)}
    assert badge.isHidden()
