"""The dock's "Map all matches" box in real QGIS: thumbs on real hits, "Score tiles" runs a task, the
slider previews from the kept scores (no new scoring), and the map file written is the one the engine makes
at that threshold, added as a layer."""
from __future__ import annotations

import numpy as np
from qgis.core import QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtTest import QTest

from rsir_qgis_plugin.core.map_io import read_map
from rsir_qgis_plugin.core.match_map import area_text, dissolve
from rsir_qgis_plugin.gui.map_panel import ScoreTilesTask

from .conftest import SEARCH_TIMEOUT_MS


def test_score_preview_with_the_slider_then_map(searched, qtbot, tmp_path):
    plugin, _ = searched
    dock = plugin.dock
    panel = dock.map_panel
    assert not panel.slider.isEnabled() and not panel.map_button.isEnabled()  # nothing scored yet
    dock.hit_row(1).up_button.click()
    dock.hit_row(2).up_button.click()
    dock.hit_row(5).down_button.click()
    dock.hit_row(6).down_button.click()
    with qtbot.waitSignal(panel.scoresReady, timeout=SEARCH_TIMEOUT_MS) as blocker:
        QTest.mouseClick(panel.score_button, Qt.MouseButton.LeftButton)
        assert isinstance(panel._task, ScoreTilesTask)  # the click returned: scoring runs in a task
    scores = blocker.args[0]
    assert scores.scoring == "probability" and len(scores.scores) > 50
    assert panel.slider.isEnabled()

    kept = panel.tile_scores
    panel.slider.setFocus()
    threshold = round(float(np.median(scores.scores)), 2)
    panel.set_threshold(threshold - 0.05)
    for _ in range(5):  # five steps up with the keyboard, as a user nudges it
        QTest.keyClick(panel.slider, Qt.Key.Key_Right)
    assert panel.threshold() == threshold
    expected = dissolve(scores, threshold)
    text = (f"{len(expected.polygons)} polygon(s), {int((scores.scores >= threshold).sum())} of "
            f"{len(scores.scores)} tiles, {area_text(expected.area_m2)}")
    qtbot.waitUntil(lambda: panel.preview_label.text() == text, timeout=2000)  # once the slider rests
    assert panel.tile_scores is kept  # the slider scored nothing again

    path = tmp_path / "matches.gpkg"
    with qtbot.waitSignal(panel.mapWritten, timeout=SEARCH_TIMEOUT_MS):
        panel.mapRequested.emit(str(path))  # what "Map matches..." emits after its file dialog
    written = read_map(path)
    assert written.threshold == threshold and written.tiles == expected.tiles
    assert [p.rings for p in written.polygons] == [p.rings for p in expected.polygons]
    layers = QgsProject.instance().mapLayersByName(f"rsir map (score ≥ {threshold:.2f})")
    assert len(layers) == 1 and layers[0].featureCount() == len(expected.polygons)
    assert "written to" in panel.preview_label.text() and panel.map_button.isEnabled()
