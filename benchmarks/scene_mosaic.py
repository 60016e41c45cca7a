"""A georeferenced mosaic of labelled scene images: every image of a folder of class folders fills one
square cell of a UTM raster, in shuffled order (seed 7), so a hit's cell gives its ground-truth class.

The one mosaic writer for benchmarks/ood_mosaic.py (UC Merced scenes) and the tests' AID mosaic
(tests/core/scene_mosaic.py). It lives here rather than under tests/ because benchmarks are scripts that
need nothing from the test suite; tests may import this helper (as `benchmarks.scene_mosaic`, the
checkout's root being on sys.path), never the reverse.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

SCENE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif")
SEED = 7  # the shuffle: the same cells every run, so figures and tests can be compared


def scene_files(data: Path) -> list[Path]:
    """The scene images in data's class folders (each folder's name is its scenes' class), sorted."""
    return sorted(p for p in data.glob("*/*") if p.suffix.lower() in SCENE_SUFFIXES)


def write_mosaic(scenes: list[Path], path: Path, cell_px: int, gsd_m: float, origin: tuple[float, float],
                 crs: str, columns: int | None = None):
    """Write the mosaic GeoTIFF (cells of cell_px pixels at gsd_m metres, top-left corner at origin).

    columns: cells a row (None: a near-square grid). Scenes of another size are resampled to a cell.
    Returns ({(col, row) of each cell's top-left pixel: class}, the raster's affine transform).
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.transform import from_origin

    columns = columns or int(np.ceil(np.sqrt(len(scenes))))
    order = np.random.default_rng(SEED).permutation(len(scenes))
    rows = -(-len(scenes) // columns)
    pixels = np.zeros((3, rows * cell_px, columns * cell_px), np.uint8)
    classes = {}
    for cell, index in enumerate(order):
        row, col = divmod(cell, columns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain JPEG scenes
            with rasterio.open(scenes[index]) as src:  # a few UC Merced scenes are not 256 px: resampled
                scene = src.read((1, 2, 3), out_shape=(3, cell_px, cell_px), resampling=Resampling.bilinear)
        pixels[:, row * cell_px:(row + 1) * cell_px, col * cell_px:(col + 1) * cell_px] = scene
        classes[(col * cell_px, row * cell_px)] = scenes[index].parent.name
    transform = from_origin(*origin, gsd_m, gsd_m)
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype="uint8", crs=crs, transform=transform, tiled=True, compress="deflate") as dst:
        dst.write(pixels)
    return classes, transform


def cell_class(classes: dict, col: int, row: int, cell_px: int) -> str:
    """The class of the scene whose cell holds pixel (col, row)."""
    return classes[(col // cell_px * cell_px, row // cell_px * cell_px)]
