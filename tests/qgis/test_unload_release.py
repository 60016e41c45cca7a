"""Unloading the plugin releases what the engine keeps between searches: the onnxruntime sessions and the
open index, whose files QGIS would otherwise hold (on Windows the index folder could not be moved)."""
from __future__ import annotations

import numpy as np
import pytest
from qgis.core import QgsApplication, QgsRectangle

import rsir_qgis_plugin
from rsir_qgis_plugin.core.embedder import shared_embedder
from rsir_qgis_plugin.core.errors import IndexStoreError
from rsir_qgis_plugin.core.model import read_model
from rsir_qgis_plugin.core.store import shared_reader
from tests.conftest import files_held

SEARCH_TIMEOUT_MS = 60_000


def test_unload_releases_the_sessions_and_closes_the_index(qgis_iface, qgis_canvas, town_layer, town_index,
                                                           tiny_model, qtbot):
    plugin = rsir_qgis_plugin.classFactory(qgis_iface)
    plugin.initGui()
    plugin.search.show_index(town_index)
    extent = qgis_canvas.mapSettings().layerExtentToOutputExtent(town_layer, town_layer.extent())
    middle, side = extent.center(), extent.width() / 8
    box = QgsRectangle(middle.x() - side, middle.y() - side, middle.x() + side, middle.y() + side)
    with qtbot.waitSignal(plugin.search.searchFinished, timeout=SEARCH_TIMEOUT_MS) as finished:
        assert plugin.search_box(box) is not None
    assert finished.args[0].result.hits

    # What the search left for the next box: the open index and the model's session.
    reader = shared_reader(town_index)
    assert shared_reader(town_index) is reader
    model, device = read_model(tiny_model), plugin.dock.search_settings().to_params().device
    embedder = shared_embedder(model, device)
    held = files_held(town_index)
    assert held is None or any(path.endswith("catalog.sqlite") for path in held), held

    plugin.unload()
    QgsApplication.processEvents()

    assert files_held(town_index) in ([], None)
    with pytest.raises(IndexStoreError, match="closed"):
        reader.search(np.ones(reader.dim, np.float32) / np.sqrt(reader.dim), 3)
    assert shared_reader(town_index) is not reader
    assert shared_embedder(model, device) is not embedder
