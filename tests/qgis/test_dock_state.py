"""The results dock follows the project and the index (issue 19, items 8, 11 and the file dialogs of 16):
closing or opening a project clears the old hits and status, a finished build replaces the 'no index'
warning, hits of a raster deleted from disk say so, and the GeoPackage dialogs start in the project's
folder. Real QGIS projects, real builds and searches with the tiny model, real dialogs."""
from __future__ import annotations

import pytest
from qgis.core import QgsProject, QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QFileDialog

from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.labels.edit import count_labels
from rsir_qgis_plugin.labels.layer import find_labels_layer

TIMEOUT_MS = 60_000


@pytest.fixture
def searched(plugin, town_layer, town_index, search_by_drag):
    plugin.search.show_index(town_index)
    plugin.dock.k_spin.setValue(6)
    plugin.dock.overlap_check.setChecked(True)
    return plugin, search_by_drag((270, 120), (330, 180))


def build(plugin, qtbot, index_dir, rasters, tiny_model):
    params = BuildParams(index_dir=index_dir, rasters=tuple(rasters), model_path=tiny_model,
                         tiling=TilingParams(tile_px=64, stride_px=32))
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=TIMEOUT_MS) as blocker:
        assert plugin.build.start(params) is not None
    assert blocker.args == ["succeeded"]


def test_closing_the_project_clears_hits_and_status(searched):
    plugin, _ = searched
    dock, project = plugin.dock, QgsProject.instance()
    dock.hit_row(1).up_button.click()
    assert find_labels_layer(project) is not None and dock.status_label.text()

    project.clear()  # Project > Close (and Project > New) clear the project
    assert dock.hit_list.count() == 0
    assert dock.status_label.text() == ""
    assert dock.labels_label.text() == "No labels yet." and not dock.refine_button.isEnabled()
    assert not dock.clear_button.isEnabled() and not dock.save_button.isEnabled()
    # A thumb of the old hits can no longer reach the new project.
    plugin.search.labels.label_hit(2, "positive")
    assert find_labels_layer(project) is None


def test_reopening_a_project_shows_its_labels_and_no_stale_status(searched, tmp_path, qtbot):
    plugin, _ = searched
    dock, project = plugin.dock, QgsProject.instance()
    dock.hit_row(1).up_button.click()
    dock.hit_row(2).down_button.click()
    dock.hit_row(3).down_button.click()
    with qtbot.waitSignal(plugin.search.labels.labelsSaved, timeout=TIMEOUT_MS):
        plugin.search.labels.save_labels(str(tmp_path / "labels.gpkg"))
    assert project.write(str(tmp_path / "work.qgz"))
    dock.hit_row(4).up_button.click()  # written into the labels file too (it is the layer now)
    assert "3 positive" in dock.status_label.text()
    dock.hit_row(4).up_button.click()  # taken back: the status line now speaks of 2 positives

    project.clear()
    assert project.read(str(tmp_path / "work.qgz"))
    layer = find_labels_layer(project)
    counts = count_labels(layer)
    assert (counts.positive, counts.negative) == (2, 2)
    assert "2 positive, 2 negative" in dock.labels_label.text()
    assert dock.status_label.text() == "", "the status line still speaks of the closed project"
    assert dock.hit_list.count() == 0 and dock.refine_button.isEnabled()


def test_a_finished_build_replaces_the_no_index_warning(plugin, town_layer, town_half, tiny_model, tmp_path,
                                                        qtbot):
    dock = plugin.dock
    index_dir = tmp_path / "new_index"
    dock.index_widget.setFilePath(str(index_dir))  # as if typed or browsed
    assert "No index here yet" in dock.index_label.text()
    assert plugin.search_box(town_layer.extent(), town_layer.crs()) is None
    assert "No index in" in dock.status_label.text()

    build(plugin, qtbot, index_dir, [town_half], tiny_model)
    assert "No index" not in dock.status_label.text()
    qtbot.waitUntil(lambda: "tiles from 1 raster" in dock.index_label.text(), timeout=TIMEOUT_MS)


@pytest.fixture
def town_right(tmp_path):
    """The right half of the real sample, as its own GeoTIFF (deleted by the test)."""
    from rasterio.windows import Window, transform

    from tests.conftest import town_pixels, write_raster

    pixels, profile = town_pixels()
    return write_raster(tmp_path / "town_right.tif", pixels[:, :, 512:].copy(), crs=profile["crs"],
                        transform=transform(Window(512, 0, 512, 1024), profile["transform"]))


def test_hits_of_a_deleted_raster_say_raster_not_found(plugin, town_layer, town_half, town_right, tiny_model,
                                                       tmp_path, search_by_drag, qtbot):
    from qgis.PyQt.QtCore import Qt

    index_dir = tmp_path / "index"
    build(plugin, qtbot, index_dir, [town_half, town_right], tiny_model)
    plugin.search.show_index(index_dir)
    plugin.dock.k_spin.setValue(40)
    town_right.unlink()  # the user deleted (or moved) the raster after indexing it

    outcome = search_by_drag((270, 120), (330, 180))
    gone = [hit for hit in outcome.result.hits if hit.raster == str(town_right.resolve())]
    kept = [hit for hit in outcome.result.hits if hit.raster != str(town_right.resolve())]
    assert gone and kept, "the test needs hits on both rasters"
    dock = plugin.dock
    for hit in gone:
        row = dock.hit_row(hit.rank)
        assert row.thumbnail.text() == "raster not found"
        assert "Raster not found" in row.thumbnail.toolTip()
        item = next(dock.hit_list.item(i) for i in range(dock.hit_list.count())
                    if dock.hit_list.itemWidget(dock.hit_list.item(i)) is row)
        assert item.toolTip().startswith("Raster not found:") and str(town_right.name) in item.toolTip()
        assert item.data(Qt.ItemDataRole.AccessibleTextRole).startswith(f"#{hit.rank}")
    for hit in kept:
        row = dock.hit_row(hit.rank)
        assert row.thumbnail.text() == "" and not row.thumbnail.pixmap().isNull()


def answer_file_dialog(seen: list):
    """When the dock's file dialog is up: note the folder it shows, then cancel it (a real dialog)."""

    def look():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QFileDialog):
            QTimer.singleShot(20, look)
            return
        seen.append(dialog.directory().absolutePath())
        dialog.reject()

    QTimer.singleShot(0, look)


@pytest.mark.parametrize("button", ["save_button", "save_labels_button", "load_labels_button"])
def test_file_dialogs_start_in_the_project_folder(searched, tmp_path, monkeypatch, button):
    plugin, _ = searched
    dock, project = plugin.dock, QgsProject.instance()
    dock.hit_row(1).up_button.click()  # so that Save labels... is enabled
    monkeypatch.chdir("/tmp")  # QGIS started from /tmp: the dialogs used to open there
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    assert project.write(str(project_dir / "work.qgz"))

    seen: list = []
    answer_file_dialog(seen)
    getattr(dock, button).click()
    assert seen == [str(project_dir)]


def test_file_dialogs_without_a_project_folder_use_the_last_folder_then_home(plugin, tmp_path, monkeypatch):
    from pathlib import Path

    from rsir_qgis_plugin.gui.file_dialogs import LAST_FOLDER_KEY

    monkeypatch.chdir("/tmp")
    assert QgsProject.instance().homePath() == ""
    dock = plugin.dock
    seen: list = []
    answer_file_dialog(seen)
    dock.load_labels_button.click()
    QgsSettings().setValue(LAST_FOLDER_KEY, str(tmp_path))
    answer_file_dialog(seen)
    dock.load_labels_button.click()
    assert seen == [str(Path.home()), str(tmp_path)]
