"""A georeferenced mosaic of the 40 real AID scenes in tests/data/scenes (4 classes x 10), for
retrieval-quality tests: each scene fills one cell of a UTM raster at 1 m/pixel, in shuffled order."""
from pathlib import Path

import numpy as np

from tests.conftest import DATA

SCENE = 150  # pixels (= metres) per scene cell
COLUMNS = 8
ORIGIN = (500_000.0, 4_000_000.0)  # top-left corner, EPSG:32633


def write_scene_mosaic(path: Path):
    """Write the mosaic GeoTIFF; returns {(col, row) of each cell's top-left pixel: class} and the transform."""
    import rasterio
    from rasterio.transform import from_origin

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
    transform = from_origin(*ORIGIN, 1.0, 1.0)
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype="uint8", crs="EPSG:32633", transform=transform) as dst:
        dst.write(pixels)
    return classes, transform


def scene_class(classes: dict, col: int, row: int) -> str:
    """The class of the scene holding pixel (col, row)."""
    return classes[(col // SCENE * SCENE, row // SCENE * SCENE)]
