"""Tiling geometry: windows, sizes in pixels and metres, bounds in the raster CRS and in EPSG:4326."""
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window, bounds as rio_bounds

from rsir_qgis_plugin.core.params import TilingParams
from rsir_qgis_plugin.core.raster import describe
from rsir_qgis_plugin.core.tiling import Grid, axis_offsets, resolve_grid, tile_windows, window_bounds
from tests.conftest import TOWN_RASTER, town_pixels, write_raster


def test_axis_offsets_cover_the_axis_and_pull_the_last_tile_back_to_the_edge():
    assert axis_offsets(1000, 224, 112) == [0, 112, 224, 336, 448, 560, 672, 776]
    assert axis_offsets(448, 224, 224) == [0, 224]
    assert axis_offsets(100, 224, 112) == [0]  # a raster smaller than a tile is one tile


def test_tile_windows_cover_every_pixel_without_hanging_over():
    windows = tile_windows(1000, 600, Grid(tile_px=224, stride_px=200))
    covered = np.zeros((600, 1000), bool)
    for col, row, w, h in windows:
        assert col + w <= 1000 and row + h <= 600 and (w, h) == (224, 224)
        covered[row:row + h, col:col + w] = True
    assert covered.all()


def test_small_raster_gives_one_clamped_window():
    assert tile_windows(100, 80, Grid(224, 112)) == [(0, 0, 100, 80)]


def test_tile_size_in_metres_on_a_projected_raster():
    source = describe(TOWN_RASTER, None, 3)  # EPSG:3395 at 0.1 m
    grid = resolve_grid(source, TilingParams(tile_m=22.4, stride_m=11.2), input_size=64)
    assert grid == Grid(tile_px=224, stride_px=112)


def test_tile_size_in_metres_on_a_geographic_raster(tmp_path):
    pixels, _ = town_pixels()
    # 1e-5 degrees at the equator is about 1.11 m east-west and north-south.
    path = write_raster(tmp_path / "geo.tif", pixels[:, 512:768, 512:768].copy(), crs="EPSG:4326",
                        transform=from_origin(10.0, 0.001, 1e-5, 1e-5))
    grid = resolve_grid(describe(path, None, 3), TilingParams(tile_m=111.3), input_size=64)
    assert grid.tile_px == 100 and grid.stride_px == 50


def test_default_grid_is_model_input_with_half_overlap():
    grid = resolve_grid(describe(TOWN_RASTER, None, 3), TilingParams(), input_size=224)
    assert grid == Grid(224, 112)


def test_window_bounds_match_rasterio_and_survive_a_round_trip_through_wgs84():
    with rasterio.open(TOWN_RASTER) as src:
        transform, crs = src.transform, src.crs
    window = (96, 320, 224, 224)
    left, bottom, right, top = rio_bounds(Window(*window), transform)
    assert window_bounds(tuple(transform), window) == pytest.approx((left, bottom, right, top))
    from rasterio.warp import transform as warp

    lon, lat = warp(crs, "EPSG:4326", [left, right], [bottom, top])
    back_x, back_y = warp("EPSG:4326", crs, lon, lat)
    assert back_x == pytest.approx([left, right], abs=1e-3) and back_y == pytest.approx([bottom, top], abs=1e-3)
