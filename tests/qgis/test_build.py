"""Building an index from QGIS: the dialog's values, the task to completion, and cancelling midway."""
from __future__ import annotations

import json
from pathlib import Path

from qgis.core import Qgis, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QDialog

from rsir_qgis_plugin.core.params import BuildParams
from rsir_qgis_plugin.gui.build_dialog import BuildIndexDialog
from rsir_qgis_plugin.settings import BuildSettings, load_build_settings

BUILD_TIMEOUT_MS = 120_000


def test_dialog_lists_rasters_describes_model_and_devices_and_makes_params(town_layer, tiny_model, tmp_path,
                                                                           qtbot):
    dialog = BuildIndexDialog(QgsProject.instance())
    qtbot.addWidget(dialog)
    assert dialog.raster_list.count() == 1
    item = dialog.raster_list.item(0)
    assert "town left" in item.text() and item.checkState() == Qt.CheckState.Checked

    assert "3 bands" in item.text(), "the band count helps choosing bands"

    dialog.model_box.file_model_radio.setChecked(True)
    dialog.model_box.model_widget.setFilePath(str(tiny_model))
    qtbot.waitUntil(lambda: "resnet18-untrained-test" in dialog.model_box.model_label.text(), timeout=30_000)
    facts = dict(dialog.model_box.facts)
    assert facts["Input"] == "64 px, 3 bands" and facts["Embedding"] == "512-d"
    assert dialog.model_box.card_button.isEnabled()
    card = dialog.model_box.show_card()
    assert "untrained" in card.text_edit.toPlainText()
    card.close()
    qtbot.waitUntil(lambda: "onnxruntime" in dialog.device_label.text(), timeout=30_000)
    assert "CPUExecutionProvider" in dialog.device_label.text()
    # Only providers rsir can use are listed (onnxruntime's CPU wheel also lists AzureExecutionProvider).
    assert "Azure" not in dialog.device_label.text()
    if "CUDAExecutionProvider" not in dialog.device_label.text():
        cuda = dialog.device_combo.findData("cuda")
        assert dialog.device_combo.itemText(cuda) == "CUDA (not available here)"

    dialog.unit_combo.setCurrentIndex(dialog.unit_combo.findData("m"))
    dialog.tile_spin.setValue(12.8)
    dialog.stride_spin.setValue(6.4)
    dialog.bands_edit.setText("3,2,1")
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    dialog.tta_check.setChecked(True)
    dialog.index_widget.setFilePath(str(tmp_path / "idx"))
    dialog.accept()

    params = dialog.build_params()
    assert isinstance(params, BuildParams) and dialog.result() == QDialog.DialogCode.Accepted
    assert params.rasters == (Path(town_layer.source()),)
    assert params.model_path == tiny_model and params.device == "cpu" and params.tta
    assert params.index_dir == tmp_path / "idx"
    assert (params.tiling.tile_m, params.tiling.stride_m, params.tiling.tile_px) == (12.8, 6.4, None)
    assert params.tiling.bands == (3, 2, 1)
    # Remembered for next time.
    assert load_build_settings() == BuildSettings(tile_size=12.8, stride=6.4, unit="m", bands="3,2,1",
                                                  device="cpu", model_path=str(tiny_model), tta=True)


def test_dialog_refuses_bad_values_without_closing(town_layer, qtbot, tmp_path):
    dialog = BuildIndexDialog(QgsProject.instance(), engine_ready=False)
    qtbot.addWidget(dialog)
    dialog.index_widget.setFilePath(str(tmp_path / "idx"))
    dialog.bands_edit.setText("red")
    dialog.accept()
    assert dialog.build_params() is None and "band numbers" in dialog.error_label.text()
    dialog.bands_edit.setText("")
    dialog._check_all(Qt.CheckState.Unchecked)
    dialog.accept()
    assert dialog.build_params() is None and "at least one raster" in dialog.error_label.text()


def test_dialog_refuses_bands_the_rasters_lack_and_does_not_remember_them(town_layer, tiny_model, tmp_path,
                                                                           qtbot):
    from qgis.core import QgsRasterLayer

    grey = tmp_path / "grey.tif"
    _write_grey(town_layer.source(), grey)
    grey_layer = QgsRasterLayer(str(grey), "grey copy", "gdal")
    assert grey_layer.isValid() and grey_layer.bandCount() == 1
    QgsProject.instance().addMapLayer(grey_layer)
    dialog = BuildIndexDialog(QgsProject.instance())
    qtbot.addWidget(dialog)
    dialog.model_box.file_model_radio.setChecked(True)
    dialog.model_box.model_widget.setFilePath(str(tiny_model))
    qtbot.waitUntil(lambda: "resnet18-untrained-test" in dialog.model_box.model_label.text(), timeout=30_000)
    dialog.index_widget.setFilePath(str(tmp_path / "idx"))

    dialog.bands_edit.setText("9,2,1")
    # Said while typing, before Build is pressed...
    assert "'town left' has 3 band(s)" in dialog.error_label.text() and not dialog.error_label.isHidden()
    dialog.accept()
    # ... and Build does not start nor remember the value.
    assert dialog.build_params() is None and dialog.result() != QDialog.DialogCode.Accepted
    assert "Band 9" in dialog.error_label.text() and "'grey copy' has 1 band(s)" in dialog.error_label.text()
    assert load_build_settings().bands == ""

    # 3,2,1 exists in the town raster but not in the grey one: unticking the grey raster makes it valid.
    dialog.bands_edit.setText("3,2,1")
    assert "'grey copy' has 1 band(s)" in dialog.error_label.text()
    assert "town left" not in dialog.error_label.text()
    grey_item = next(dialog.raster_list.item(i) for i in range(dialog.raster_list.count())
                     if "grey copy" in dialog.raster_list.item(i).text())
    grey_item.setCheckState(Qt.CheckState.Unchecked)
    assert dialog.error_label.text() == "" and dialog.error_label.isHidden()

    # The model takes 3 bands: two are refused before a build fails on every raster.
    dialog.bands_edit.setText("1,2")
    dialog.accept()
    assert dialog.build_params() is None and "The model takes 3 band(s)" in dialog.error_label.text()
    assert load_build_settings().bands == ""

    dialog.bands_edit.setText("3,2,1")
    dialog.accept()
    assert dialog.build_params().tiling.bands == (3, 2, 1) and load_build_settings().bands == "3,2,1"


def _write_grey(source: str, path: Path) -> None:
    import rasterio

    with rasterio.open(source) as src:
        profile = src.profile | {"count": 1, "photometric": "minisblack"}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(1), 1)


def test_dialog_refuses_a_model_it_could_not_read(town_layer, tmp_path, qtbot):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an ONNX graph")
    dialog = BuildIndexDialog(QgsProject.instance())
    qtbot.addWidget(dialog)
    dialog.model_box.file_model_radio.setChecked(True)
    dialog.model_box.model_widget.setFilePath(str(bad))
    qtbot.waitUntil(lambda: dialog.model_box.model_label.text().startswith("Not usable"), timeout=30_000)
    dialog.index_widget.setFilePath(str(tmp_path / "idx"))
    dialog.accept()
    assert dialog.build_params() is None and "This model cannot be used" in dialog.error_label.text()
    assert load_build_settings().model_path == ""


def test_a_bad_band_value_saved_before_is_not_loaded(qtbot):
    from qgis.core import QgsSettings

    for bad in ("red", "0,1,2"):
        QgsSettings().setValue("rsir/build/bands", bad)
        assert load_build_settings().bands == ""
    QgsSettings().setValue("rsir/build/bands", "4,3,2")
    assert load_build_settings().bands == "4,3,2"


def test_dialog_fits_a_laptop_screen_and_shows_the_model_metrics_as_a_table(town_layer, town_half, qtbot):
    """The bundled model's card, the device line and one raster: no taller than 700 px; with more
    rasters the form scrolls and the dialog stays within the screen (the offscreen screen is 600 px)."""
    from qgis.core import QgsRasterLayer
    from qgis.PyQt.QtGui import QGuiApplication

    dialog = BuildIndexDialog(QgsProject.instance())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: bool(dialog.model_box.facts) and "onnxruntime" in dialog.device_label.text(),
                    timeout=30_000)
    facts = dict(dialog.model_box.facts)
    # The bundled default's card (issue 22: 160 px input over 128 px tiles, re-measured).
    assert facts["AID150 test mAP"] == "0.919" and facts["P@10"] == "0.942"
    assert facts["Turned 90° / 45°"] == "0.918 / 0.879" and facts["Input"] == "160 px from 128 px tiles, 3 bands"
    assert facts["Embedding"] == "128-d"
    model_text = dialog.model_box.model_label.text()
    assert "best_epoch" not in model_text and "metrics:" not in model_text
    assert dialog.natural_height() <= 700

    for i in range(7):
        QgsProject.instance().addMapLayer(QgsRasterLayer(str(town_half), f"copy {i}", "gdal"))
    crowded = BuildIndexDialog(QgsProject.instance())
    qtbot.addWidget(crowded)
    crowded.show()
    qtbot.waitUntil(lambda: bool(crowded.model_box.facts) and "onnxruntime" in crowded.device_label.text(),
                    timeout=30_000)
    screen = QGuiApplication.primaryScreen().availableGeometry().height()
    assert crowded.frameGeometry().height() <= min(screen, 768)
    assert crowded.natural_height() > crowded.height(), "the form is taller than the dialog here"
    bar = crowded.scroll.verticalScrollBar()
    assert bar.maximum() > 0
    # The index folder stays below the scrolling form: visible without scrolling (issue 19, item 13).
    assert crowded.index_widget.visibleRegion().boundingRect() == crowded.index_widget.rect()
    # Nothing is cut at the right: the form fits the viewport's width.
    assert crowded.form.minimumSizeHint().width() <= crowded.scroll.viewport().width()


def test_build_task_runs_to_completion(plugin, town_layer, town_half, tiny_model, tmp_path, qgis_iface, qtbot):
    from rsir_qgis_plugin.core.store import read_index_info

    index_dir = tmp_path / "index"
    params = BuildSettings(tile_size=64, stride=64, model_path=str(tiny_model)).to_params(index_dir,
                                                                                        [str(town_half)])
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
        task = plugin.build.start(params)
        assert task is not None
        assert plugin.build.start(params) is None, "a second build must not start beside the first"
    assert ended.args == ["succeeded"]

    info = read_index_info(index_dir)
    summary = plugin.build.summary
    # Every 64 px window of the 512 x 1024 raster was embedded or skipped (the sample has nodata collars).
    assert summary.tiles_indexed + summary.tiles_skipped == (512 // 64) * (1024 // 64)
    assert info.tile_count == summary.tiles_total == summary.tiles_indexed > 64
    assert plugin.build.summary.rasters_indexed == 1
    item = plugin.build.outcome_item
    assert item.level() == Qgis.MessageLevel.Success
    assert item.text().startswith(f"{info.tile_count} tiles indexed in ")
    # The dock now searches the index just built.
    assert Path(plugin.dock.index_dir()) == index_dir
    qtbot.waitUntil(lambda: f"{info.tile_count} tiles" in plugin.dock.index_label.text(), timeout=30_000)

    # Re-running updates incrementally: nothing to embed.
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS):
        plugin.build.start(params)
    assert plugin.build.summary.tiles_indexed == 0 and plugin.build.summary.rasters_unchanged == 1
    assert plugin.build.outcome_item.text() == (f"no new tiles to index; "
                                                f"the index holds {info.tile_count} tiles")


def test_cancel_midway_keeps_the_previous_index(plugin, town_half, town_full, tiny_model, tmp_path, qgis_iface,
                                                qtbot):
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box
    from rsir_qgis_plugin.core.store import read_index_info

    index_dir = tmp_path / "index"
    first = BuildSettings(tile_size=64, stride=64, model_path=str(tiny_model)).to_params(index_dir, [str(town_half)])
    build_index(first)
    before = read_index_info(index_dir)
    manifest_before = (index_dir / "manifest.json").read_text()

    # The whole raster with a 16 px stride: ~3700 tiles, far more than the moment before cancelling.
    second = BuildSettings(tile_size=64, stride=16, model_path=str(tiny_model)).to_params(index_dir, [str(town_full)])
    progress = []
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=BUILD_TIMEOUT_MS) as ended:
        task = plugin.build.start(second)
        task.progressChanged.connect(progress.append)
        qtbot.waitUntil(lambda: task.progress() >= 3, timeout=BUILD_TIMEOUT_MS)
        task.cancel()
    assert ended.args == ["cancelled"]
    # A clean cancel ends the task Complete (not "Task failed" in QGIS 3.22), which QGIS sets to 100 %.
    assert progress[-1] == 100
    assert 3 <= max(progress[:-1]) < 90, "the build was cancelled midway, not at its start or end"

    after = read_index_info(index_dir)
    assert (index_dir / "manifest.json").read_text() == manifest_before
    assert (after.generation, after.tile_count, after.rasters) == (before.generation, before.tile_count,
                                                                   before.rasters)
    item = plugin.build.outcome_item
    assert item.level() == Qgis.MessageLevel.Info
    assert "cancelled; the previous index is unchanged" in item.text()
    # Still searchable as before.
    result = search_box(index_dir, town_half, _center_box(town_half), None, SearchParams(k=3))
    assert len(result.hits) == 3
    assert json.loads(manifest_before)["generation"] == after.generation


def _center_box(path: Path) -> tuple[float, float, float, float]:
    import rasterio

    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
    cx, cy = (left + right) / 2, (bottom + top) / 2
    return cx - 3.2, cy - 3.2, cx + 3.2, cy + 3.2


def test_unload_during_a_build_cancels_it_and_leaves_no_thread(plugin, town_full, tiny_model, tmp_path, qtbot):
    from qgis.core import QgsApplication

    from rsir_qgis_plugin.tasks import is_active

    params = BuildSettings(tile_size=64, stride=16, model_path=str(tiny_model)).to_params(tmp_path / "i",
                                                                                         [str(town_full)])
    task = plugin.build.start(params)
    qtbot.waitUntil(lambda: task.progress() >= 2, timeout=BUILD_TIMEOUT_MS)
    plugin.unload()
    assert not is_active(task)
    assert QgsApplication.taskManager().countActiveTasks() == 0
    assert not (tmp_path / "i" / "manifest.json").exists()
