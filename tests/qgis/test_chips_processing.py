"""rsir:export_chips through processing.run on the real town index: the chips folder it writes from a labels
layer is the one the engine writes from the same labels file; a folder it must not replace is refused."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsVectorLayer

from rsir_qgis_plugin.core.chips import ChipParams, export_chips
from rsir_qgis_plugin.core.chips_folder import read_csv
from tests.qgis.test_map_processing import labelled


def test_export_chips_writes_the_engines_chips(provider, project, town_index, town_half, tmp_path):
    import processing

    labels_path = labelled(town_index, town_half, tmp_path)
    labels = QgsVectorLayer(str(labels_path), "labels", "ogr")
    assert labels.isValid()
    project.addMapLayer(labels)
    out = tmp_path / "chips"
    result = processing.run("rsir:export_chips", {"INDEX": str(town_index), "LABELS": labels, "OUTPUT": str(out),
                                                   "PER_CLASS": 0, "SEED": 0})
    assert (result["POSITIVE"], result["NEGATIVE"]) == (2, 2) and result["OUTPUT"] == str(out)
    engine = tmp_path / "engine"
    export_chips(ChipParams(town_index, labels_path, engine))
    rows = read_csv(out / "chips.csv")
    assert rows == read_csv(engine / "chips.csv") and len(rows) == 4
    for row in rows:
        with rasterio.open(out / row.file) as ours, rasterio.open(engine / row.file) as theirs:
            np.testing.assert_array_equal(ours.read(), theirs.read())
            assert ours.transform == theirs.transform and ours.crs == theirs.crs
    assert (out / "chips.json").read_text().count(labels_path.name) >= 1
    (out / "mine.txt").write_text("not a chip")
    with pytest.raises(QgsProcessingException, match="neither empty nor a chips folder"):
        processing.run("rsir:export_chips", {"INDEX": str(town_index), "LABELS": labels, "OUTPUT": str(out)})
    assert (out / "mine.txt").exists()


def test_the_menu_entry_opens_the_algorithm_in_processing(plugin, qgis_iface, qgis_processing, town_index,
                                                         monkeypatch):
    from qgis.gui import QgsBrowserGuiModel
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QAction, QApplication

    # pytest-qgis's iface has no browser model; Processing's dialog asks QGIS's for its file pickers.
    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)

    [action] = [a for a in qgis_iface.mainWindow().findChildren(QAction) if a.objectName() == "rsirExportChips"]
    assert action.text() == "Export training chips..." and action not in plugin.toolbar.actions()  # menu only
    plugin.search.show_index(town_index)  # the index the dock shows
    seen = []

    def look_and_close():
        dialogs = [w for w in QApplication.topLevelWidgets() if hasattr(w, "algorithm") and w.isVisible()]
        if not dialogs:  # not shown yet: look again
            QTimer.singleShot(100, look_and_close)
            return
        dialog = dialogs[0]
        seen.append(dialog.algorithm().id())
        seen.append(dialog.mainWidget().wrappers["INDEX"].parameterValue())
        dialog.reject()

    QTimer.singleShot(100, look_and_close)
    action.trigger()  # modal: returns once the dialog is closed
    assert seen == ["rsir:export_chips", str(town_index)]
