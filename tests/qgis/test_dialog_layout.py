"""The build dialog's layout at a real size, the model card, and the build's message-bar item
(issue 19, items 9, 13 and 14). Real widgets, real mouse clicks, the bundled default model."""
from __future__ import annotations

import pytest
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QWidget

from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH, read_model
from rsir_qgis_plugin.gui.build_dialog import BuildIndexDialog

LONG_LAYER = "naip_m_3807708_ne_18_060_20181110_20190212 clipped to the study area, spring survey"
TIMEOUT_MS = 30_000


def click(widget) -> None:
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, widget.rect().center())


def wholly_visible(widget) -> bool:
    """Shown and not clipped by any parent (a scroll area's viewport, the dialog's edge)."""
    return widget.isVisible() and widget.visibleRegion().boundingRect() == widget.rect()


@pytest.fixture
def described_dialog(town_layer, town_half, qtbot):
    """The build dialog over two rasters (one with a long name), once the default model is read."""
    QgsProject.instance().addMapLayer(QgsRasterLayer(str(town_half), LONG_LAYER, "gdal"))

    def open_dialog(size=None):
        dialog = BuildIndexDialog(QgsProject.instance())
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitUntil(lambda: bool(dialog.model_box.facts) and "onnxruntime" in dialog.device_label.text()
                        and "mAP" in dialog.model_box.bundled_combo.currentText(), timeout=TIMEOUT_MS)
        QTest.qWait(50)  # the dialog fits itself to the text that arrived
        if size:
            dialog.resize(*size)
        QTest.qWait(50)
        return dialog

    return open_dialog


def test_model_card_is_readable_with_the_json_behind_details(described_dialog, qtbot):
    dialog = described_dialog()
    box = dialog.model_box
    assert box.card_button.isEnabled()
    click(box.card_button)
    viewer = box.viewer
    assert viewer is not None and viewer.isVisible()
    text = viewer.text_edit.toPlainText()
    bundled = read_model(DEFAULT_MODEL_PATH).contract  # the card must show the bundled file's own facts
    metrics = bundled.training["metrics"]
    assert text.startswith(bundled.name)
    assert "Trained on" in text and "AID aerial scenes" in text and "30 scene classes" in text
    assert f"mAP: {metrics['aid150_test_map']:.3f}" in text and f"P@10: {metrics['aid150_test_p@10']:.3f}" in text
    assert "UC Merced" in text
    assert "mean average precision" in text  # what a figure means, not just its key
    assert "Licence" in text and "Apache-2.0" in text
    for raw in ("bank_milestones", "aid150_test_map_queries_rotated_45", "../shared/data", '"git"', "{"):
        assert raw not in text, f"{raw!r} belongs under Details"
    assert len(text.splitlines()) < 60

    assert not viewer.details_edit.isVisible()
    click(viewer.details_button)
    assert viewer.details_edit.isVisible()
    assert "bank_milestones" in viewer.details_edit.toPlainText()
    click(viewer.details_button)
    assert not viewer.details_edit.isVisible()
    viewer.close()


def test_at_800_by_800_the_raster_list_stretches_and_nothing_is_cut(described_dialog):
    dialog = described_dialog((800, 800))
    assert (dialog.width(), dialog.height()) == (800, 800)
    rasters = dialog.raster_list
    row = rasters.sizeHintForRow(0)
    assert rasters.height() > 6 * row, f"the list is {rasters.height() / row:.1f} rows high in an 800 px dialog"
    assert not rasters.horizontalScrollBar().isVisible()
    assert dialog.scroll.verticalScrollBar().maximum() == 0, "the form scrolls in an 800 px dialog"
    assert wholly_visible(dialog.index_widget)
    combo = dialog.model_box.bundled_combo
    assert wholly_visible(combo)
    assert combo.toolTip().startswith(combo.currentText()) and "default.onnx" in combo.currentText()
    label = dialog.model_box.model_label
    assert label.toolTip() and wholly_visible(label)
    assert label.fontMetrics().horizontalAdvance(label.text()) <= label.width() or label.wordWrap()


def test_index_folder_and_model_name_show_without_scrolling_at_the_default_size(described_dialog):
    dialog = described_dialog()
    assert wholly_visible(dialog.index_widget)
    combo = dialog.model_box.bundled_combo
    assert wholly_visible(combo) and wholly_visible(dialog.model_box.card_button)
    aid_map = read_model(DEFAULT_MODEL_PATH).contract.training["metrics"]["aid150_test_map"]
    assert f"AID150 mAP {aid_map:.3f}" in combo.currentText()
    arrow = 40  # the drop-down button and the frame
    assert combo.fontMetrics().horizontalAdvance(combo.currentText()) + arrow <= combo.width(), (
        f"the model name {combo.currentText()!r} is cut in a {combo.width()} px box")


def test_dialog_size_is_remembered(described_dialog):
    dialog = described_dialog((820, 500))
    dialog.reject()
    again = described_dialog()
    assert (again.width(), again.height()) == (820, 500)


def test_build_progress_item_stays_narrow(plugin, town_full, tiny_model, tmp_path, qtbot):
    """The progress item lives in the message bar above the map: a wide minimum there makes QGIS's
    main window take the width from the side panels (Browser and Layers shrank from 255 to 105 px)."""
    import shutil

    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    raster = tmp_path / ("m_3807708_ne_18_060_20181110_20190212_naip_four_band_orthophoto_of_the_"
                         "whole_study_area.tif")
    shutil.copy(town_full, raster)
    params = BuildParams(index_dir=tmp_path / "index", rasters=(raster,), model_path=tiny_model,
                         tiling=TilingParams(tile_px=64, stride_px=32))
    plugin.iface.messageBar().clearWidgets()  # items earlier tests left would widen the bar's own buttons
    with qtbot.waitSignal(plugin.build.buildEnded, timeout=120_000):
        plugin.build.start(params)
        progress = plugin.build.progress
        qtbot.waitUntil(lambda: raster.name[:20] in progress.status.toolTip() + progress.status.text(),
                        timeout=60_000)
        item = progress.item
        assert item.minimumSizeHint().width() <= 420, (
            f"the progress item needs {item.minimumSizeHint().width()} px: "
            f"{[(type(w).__name__, w.minimumSizeHint().width()) for w in item.findChildren(QWidget)]}")
        bar = plugin.iface.messageBar()
        assert bar.currentItem() is item
        # The bar adds its close and count buttons to the item it shows.
        assert bar.minimumSizeHint().width() <= min(500, item.minimumSizeHint().width() + 120)
        assert raster.name in progress.status.toolTip()  # the whole line, for whom wants it
