"""Render the canvas with the raster, the query box and the hits to a PNG and check what is on it.

The picture is kept in out/qgis/ (git-ignored) for a person to look at.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsMapRendererParallelJob, QgsProject
from qgis.PyQt.QtGui import QColor, QImage

from rsir_qgis_plugin.layers import owned_layer

pytestmark = pytest.mark.slow  # renders the canvas to a picture

OUT = Path(__file__).resolve().parents[2] / "out" / "qgis"
QUERY_RGB = (230, 0, 126)


def render(settings) -> QImage:
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def as_array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    pointer = image.constBits()
    pointer.setsize(image.bytesPerLine() * height)
    rows = np.frombuffer(pointer, np.uint8).reshape(height, image.bytesPerLine())
    return rows[:, : width * 3].reshape(height, width, 3).copy()


def near(pixels: np.ndarray, rgb, tolerance: int = 40) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.array(rgb)).sum(axis=2) < tolerance)


def test_canvas_with_raster_query_box_and_hits(plugin, town_layer, town_index, qgis_canvas, search_by_drag):
    plugin.search.show_index(town_index)
    plugin.dock.k_spin.setValue(8)
    search_by_drag((260, 110), (340, 190))

    project = QgsProject.instance()
    hits, query = owned_layer(project, "hits"), owned_layer(project, "query")
    settings = qgis_canvas.mapSettings()
    settings.setLayers([query, hits, town_layer])
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setOutputSize(qgis_canvas.size())
    image = render(settings)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "canvas_hits.png"
    assert image.save(str(path))

    pixels = as_array(image)
    raster_only = settings
    raster_only.setLayers([town_layer])
    plain = as_array(render(raster_only))
    # Not blank: the imagery has texture, and the vector layers changed part of the picture.
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    changed = (np.abs(pixels.astype(int) - plain.astype(int)).sum(axis=2) > 30).mean()
    assert 0.002 < changed < 0.5, changed
    # The dashed query outline is drawn in its colour, where the box was dragged.
    magenta = near(pixels, QUERY_RGB) & ~near(plain, QUERY_RGB)
    rows, cols = np.nonzero(magenta)
    assert magenta.sum() > 100
    assert 230 < cols.mean() < 370 and 80 < rows.mean() < 220
    # The hits' outlines (graduated colours) are drawn too, away from the query box.
    symbols = [r.symbol().color() for r in hits.renderer().ranges()]
    outline = np.zeros(magenta.shape, bool)
    for symbol in symbols:
        outline |= near(pixels, (symbol.red(), symbol.green(), symbol.blue()), 60) & ~near(plain, (
            symbol.red(), symbol.green(), symbol.blue()), 60)
    assert outline.sum() > 200
