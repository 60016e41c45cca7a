"""A tile size that leaves a raster's tiles only a few pixels wide is refused (issue 19, item 4).

`--tile-metres 100` on 90 m Landsat pixels made one-pixel tiles, each upsampled to the model input:
hundreds of thousands of tiles holding nothing to compare, with no word. Now that raster is refused by
name with its pixel size and the smallest sensible tile, and the other rasters are indexed.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from rasterio.transform import from_origin

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import BuildFailed
from rsir_qgis_plugin.core.params import MIN_TILE_PX, TilingParams
from rsir_qgis_plugin.core.store import IndexReader
from tests.conftest import town_pixels, write_raster

from .conftest import params, run_cli


def landsat_like(path: Path) -> Path:
    """A 48x48 px raster of 90 m pixels in UTM (real pixels from the sample, on a coarse grid)."""
    pixels, _ = town_pixels()
    return write_raster(path, pixels[:, 256:304, 512:560].copy(), crs="EPSG:32651",
                        transform=from_origin(300_000.0, 1_600_000.0, 90.0, 90.0))


def indexed_names(index: Path) -> set[str]:
    with IndexReader(index) as reader:
        return {Path(entry.path).name for entry in reader.rasters.values()}


def test_tiles_of_a_few_pixels_in_metres_are_refused_per_raster(tmp_path, tiny_model, town_crop):
    coarse = landsat_like(tmp_path / "landsat.tif")
    index = tmp_path / "idx"
    # 100 m: ~1000 px of the 0.1 m crop (one tile), but 1 px of Landsat's 90 m pixels.
    done = run_cli("index", "build", index, town_crop, coarse, "--model", tiny_model, "--tile-metres", 100)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if "landsat.tif" in line)
    assert "90 m pixels" in line and f"at least {MIN_TILE_PX} px" in line and "720 m" in line, line
    assert indexed_names(index) == {"town_crop.tif"}


def test_a_pixel_tile_size_below_the_floor_is_refused(tmp_path, tiny_model, town_crop):
    # On the command line: a usage error before anything is read.
    done = run_cli("index", "build", tmp_path / "idx", town_crop, "--model", tiny_model, "--tile-size", 4)
    assert done.returncode == 2 and f"at least {MIN_TILE_PX}" in done.stderr, done.stderr
    assert not (tmp_path / "idx").exists()
    # Through the engine (QGIS dialog, Processing): each raster is refused by name, one line each.
    pixels = town_pixels()[0]
    first = write_raster(tmp_path / "first.tif", pixels[:, 256:288, 512:544].copy())
    second = write_raster(tmp_path / "second.tif", pixels[:, 320:352, 576:608].copy())
    with pytest.raises(BuildFailed) as failed:  # every raster failed: nothing committed, each named
        build_index(params(tmp_path / "idx2", [first, second], tiny_model,
                           tiling=TilingParams(tile_px=4, stride_px=4)))
    text = str(failed.value)
    assert "first.tif: tiles of 4 px" in text and "second.tif: tiles of 4 px" in text, text
    assert f"at least {MIN_TILE_PX} px" in text, text
