"""Tiling geometry: windows, sizes in pixels and metres, bounds in the raster CRS and in EPSG:4326."""
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import bounds as rio_bounds

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
    grid = resolve_grid(source, TilingParams(tile_m=22.4, stride_m=11.2), default_tile=64)
    assert grid == Grid(tile_px=224, stride_px=112)


def test_tile_size_in_metres_on_a_geographic_raster(tmp_path):
    pixels, _ = town_pixels()
    # 1e-5 degrees at the equator is about 1.11 m east-west and north-south.
    path = write_raster(tmp_path / "geo.tif", pixels[:, 512:768, 512:768].copy(), crs="EPSG:4326",
                        transform=from_origin(10.0, 0.001, 1e-5, 1e-5))
    grid = resolve_grid(describe(path, None, 3), TilingParams(tile_m=111.3), default_tile=64)
    assert grid.tile_px == 100 and grid.stride_px == 50


def test_default_grid_is_model_input_with_half_overlap():
    grid = resolve_grid(describe(TOWN_RASTER, None, 3), TilingParams(), default_tile=224)
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


def _reference_tile(ds, source, window, size):
    """A tile as read_window read it before strips: pixels and mask (always) resampled to size."""
    from rasterio.enums import MaskFlags, Resampling

    from rsir_qgis_plugin.core.raster import to_uint8
    from rsir_qgis_plugin.core.tiling import COLLAR_LEVEL

    unique = sorted(set(source.bands))
    pixels = ds.read(unique, window=Window(*window), out_shape=(len(unique), size, size),
                     resampling=Resampling.bilinear)[[unique.index(b) for b in source.bands]]
    valid = ds.dataset_mask(window=Window(*window), out_shape=(size, size), resampling=Resampling.nearest) > 0
    if source.stretch is not None:
        pixels = np.where(valid[None], pixels, 0)
    tile = to_uint8(pixels, source.stretch)
    if all(MaskFlags.all_valid in flags for flags in ds.mask_flag_enums):
        valid &= tile.max(axis=0) > COLLAR_LEVEL
    return tile, float(valid.mean())


def _one_by_one(ds, source, windows, size, min_valid):
    """What read_tiles gave before strips: one window at a time and numpy's standard deviation."""
    from rsir_qgis_plugin.core.tiling import EMPTY_TILE_STD, read_window

    out = []
    for window in windows:
        tile, valid = _reference_tile(ds, source, window, size)
        now, now_valid = read_window(ds, source, window, size)
        assert now_valid == valid
        np.testing.assert_array_equal(now, tile)
        flat = tile.reshape(tile.shape[0], -1).std(axis=1).max() < EMPTY_TILE_STD
        out.append((window, tile if valid >= min_valid and valid > 0 and not flat else None))
    return out


def _strip_cases(tmp_path):
    """Real imagery with what a tile check meets: a black collar (no nodata declared), nodata values with a
    stretch, an alpha band, a grey band fed three times, a flat fill, and a raster in 16-row strips."""
    import rasterio
    from rasterio.enums import ColorInterp

    pixels, _ = town_pixels()
    collar = pixels[:, 256:576, 256:640].copy()
    collar[:, :, :100] = 0
    collar[:, 200:, 300:] = 90  # flat fill
    floats = pixels[:, 256:576, 256:640].astype(np.float32) / 255.0
    floats[:, :96, :] = 9999.0  # above the data: a nodata value that reached the stretch would be white
    rgba = np.concatenate([pixels[:, 256:576, 256:640], np.full((1, 320, 384), 255, np.uint8)])
    rgba[3, :, 150:250] = 0
    striped = tmp_path / "striped.tif"
    with rasterio.open(striped, "w", driver="GTiff", width=384, height=320, count=3, dtype="uint8",
                       crs="EPSG:3395", transform=from_origin(13467600.0, 1632000.0, 0.1, 0.1),
                       tiled=False, blockysize=16, compress="jpeg") as dst:
        dst.write(collar)
    return [
        write_raster(tmp_path / "collar.tif", collar),
        write_raster(tmp_path / "f32.tif", floats, nodata=9999.0),
        write_raster(tmp_path / "rgba.tif", rgba,
                     colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]),
        write_raster(tmp_path / "grey.tif", collar[:1].copy()),
        striped,
    ]


@pytest.mark.parametrize("grid", [Grid(64, 32), Grid(64, 64), Grid(64, 48), Grid(96, 40)])
def test_strip_reads_give_the_tiles_and_skips_of_reading_one_window_at_a_time(tmp_path, grid):
    from rsir_qgis_plugin.core.raster import open_dataset
    from rsir_qgis_plugin.core.tiling import read_tiles

    for path in _strip_cases(tmp_path):
        source = describe(path, None, 3)
        windows = tile_windows(source.width, source.height, grid)
        size = 64  # 64 px tiles are read as strips; 96 px ones are resampled one by one
        with open_dataset(path) as ds:
            got = list(read_tiles(ds, source, windows, size, 0.5))
            expected = _one_by_one(ds, source, windows, size, 0.5)
        assert [w for w, _ in got] == windows
        kept = [t is not None for _, t in got]
        assert kept == [t is not None for _, t in expected], path.name
        assert 0 < sum(kept) < len(kept), path.name  # every case skips some tiles and keeps others
        for (_, a), (_, b) in zip(got, expected):
            if a is not None:
                assert a.dtype == np.uint8 and a.shape == (3, size, size)
                np.testing.assert_array_equal(a, b)


def test_strips_follow_rows_and_a_resumed_start_and_never_exceed_their_width():
    from rsir_qgis_plugin.core.tiling import STRIP_MAX_PX, _strips

    windows = tile_windows(20_000, 200, Grid(64, 32))
    resumed = windows[7:]  # a build resumed from a checkpoint starts mid-row
    strips = list(_strips(resumed, 64))
    assert [w for strip in strips for w in strip] == resumed
    for strip in strips:
        assert len({w[1] for w in strip}) == 1
        assert strip[-1][0] + 64 - strip[0][0] <= STRIP_MAX_PX
    assert len(strips) > len({w[1] for w in resumed})  # 20,000 px rows are cut into several strips
    mixed = [(0, 0, 64, 64), (32, 0, 64, 64), (0, 0, 100, 80), (0, 64, 64, 64)]
    assert list(_strips(mixed, 64)) == [mixed[:2], [mixed[2]], [mixed[3]]]


def test_is_empty_is_numpys_standard_deviation_test():
    from rsir_qgis_plugin.core.tiling import EMPTY_TILE_STD, is_empty

    rng = np.random.default_rng(0)
    for spread in (0, 1, 2, 3, 40):
        tile = np.clip(100 + rng.integers(-spread, spread + 1, (3, 64, 64)), 0, 255).astype(np.uint8)
        tile[1] = tile[0] if spread < 3 else tile[1]
        expected = tile.reshape(3, -1).std(axis=1).max() < EMPTY_TILE_STD
        assert is_empty(tile) == expected
    one_bright = np.full((3, 64, 64), 7, np.uint8)
    one_bright[:, 0, 0] = 255  # std 3.9: an isolated bright pixel is not flat
    assert not is_empty(one_bright)
    assert is_empty(np.full((3, 64, 64), 200, np.uint8))
