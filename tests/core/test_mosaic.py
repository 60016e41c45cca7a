"""Retrieval quality on real scenes: a georeferenced mosaic of AID scenes of known classes,
indexed with the bundled default model; querying a scene must rank scenes of its class first."""
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.search import search_box
from tests.conftest import DATA

SCENE = 150
COLUMNS = 8


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """40 real scenes (4 classes x 10) in shuffled cells of one UTM raster at 1 m/pixel."""
    scenes = sorted((DATA / "scenes").glob("*/*.jpg"))
    order = np.random.default_rng(7).permutation(len(scenes))
    rows = -(-len(scenes) // COLUMNS)
    pixels = np.zeros((3, rows * SCENE, COLUMNS * SCENE), np.uint8)
    classes = {}
    for cell, index in enumerate(order):
        row, col = divmod(cell, COLUMNS)
        with rasterio.open(scenes[index]) as src:
            pixels[:, row * SCENE:(row + 1) * SCENE, col * SCENE:(col + 1) * SCENE] = src.read()
        classes[(col * SCENE, row * SCENE)] = scenes[index].parent.name
    path = tmp_path_factory.mktemp("mosaic") / "mosaic.tif"
    transform = from_origin(500_000.0, 4_000_000.0, 1.0, 1.0)
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype="uint8", crs="EPSG:32633", transform=transform) as dst:
        dst.write(pixels)
    index = path.parent / "idx"
    summary = build_index(BuildParams(index_dir=index, rasters=(path,), model_path=DEFAULT_MODEL_PATH,
                                      tiling=TilingParams(tile_m=150.0, stride_m=150.0)))
    assert summary.tiles_total == len(scenes)
    return path, index, classes, transform


def test_scenes_of_the_query_class_rank_first(mosaic):
    path, index, classes, transform = mosaic
    precisions = []
    for (col, row), label in classes.items():
        left, top = transform * (col, row)
        box = (left, top - SCENE, left + SCENE, top)
        hits = search_box(index, path, box, None, SearchParams(k=3)).hits
        precisions.append(np.mean([classes[h.window[:2]] == label for h in hits]))
    # 9 of the 39 other scenes share the query's class: chance is 0.23.
    print(f"mosaic P@3 with the default model: {np.mean(precisions):.3f}")
    assert np.mean(precisions) >= 0.7, precisions
