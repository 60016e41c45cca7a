"""Pairs of dates made from real imagery for the search-through-time tests (issue 23).

The before date is the town crop of tests/conftest.py (384 x 384 px of real 0.1 m imagery, EPSG:3395),
indexed with the tiny model in 96 px tiles at a 48 px stride: 49 places. An after date is the same
crop with blocks of the river, cut from elsewhere in the same raster (tests/data/oam_town_1024.tif), pasted
over roofs and cars: a synthetic change with known places.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import town_pixels, write_raster, write_town_crop

TILE, STRIDE = 96, 48
CROP = (256, 512)  # the crop's top-left (row, col) in the town raster (tests/conftest.write_town_crop)
# River water of the town raster, (row, col) of a 96 px block: two different blocks of the same kind.
RIVER_A, RIVER_B = (640, 20), (800, 40)
# Where they are pasted on the crop, (col, row) of a tile window: A over roofs and a road, B over cars.
AT_A, AT_B = (192, 96), (48, 240)


def before_index(folder: Path, model: Path, **tiling) -> tuple[Path, Path]:
    """(folder/idx, folder/town_crop.tif): the before date, indexed."""
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    raster = write_town_crop(folder)
    build_index(BuildParams(index_dir=folder / "idx", rasters=(raster,), model_path=model,
                            tiling=TilingParams(**({"tile_px": TILE, "stride_px": STRIDE} | tiling))))
    return folder / "idx", raster


def crop_pixels() -> tuple[np.ndarray, dict]:
    """The before date's pixels (3, 384, 384) and the town raster's profile."""
    pixels, profile = town_pixels()
    row, col = CROP
    return pixels[:, row:row + 384, col:col + 384].copy(), profile


def pasted(pixels: np.ndarray, *pastes: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """The pixels with 96 px blocks of the town raster pasted: each ((source row, col), (target col, row))."""
    town, _ = town_pixels()
    out = pixels.copy()
    for (row, col), (at_col, at_row) in pastes:
        out[:, at_row:at_row + TILE, at_col:at_col + TILE] = town[:, row:row + TILE, col:col + TILE]
    return out


def write_after(path: Path, pixels: np.ndarray, crs=None, transform=None, nodata=None) -> Path:
    """An after date on the before date's grid (or the given one)."""
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    _, profile = town_pixels()
    row, col = CROP
    grid = transform or window_transform(Window(col, row, 384, 384), profile["transform"])
    return write_raster(path, pixels, crs=crs or profile["crs"], transform=grid, nodata=nodata)


def window_box(raster: Path, window: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """A pixel window of a raster as (xmin, ymin, xmax, ymax) in its CRS."""
    import rasterio

    col, row, width, height = window
    with rasterio.open(raster) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + width, row + height)
    return min(left, right), min(bottom, top), max(left, right), max(bottom, top)


def overlaps(window: tuple[int, int, int, int], at: tuple[int, int], size: int = TILE) -> bool:
    """Whether a tile window shares pixels with the block of `size` px (the pasted 96) at `at` (col, row)."""
    col, row, width, height = window
    return col < at[0] + size and at[0] < col + width and row < at[1] + size and at[1] < row + height
