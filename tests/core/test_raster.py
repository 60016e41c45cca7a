"""Bands, dtypes, stretch and nodata handling on real GeoTIFFs."""
import numpy as np
import pytest
from rasterio.enums import ColorInterp

from rsir_qgis_plugin.core.errors import RasterError
from rsir_qgis_plugin.core.params import TilingParams
from rsir_qgis_plugin.core.raster import describe, open_dataset
from rsir_qgis_plugin.core.tiling import read_tiles, read_window, resolve_grid, tile_windows
from tests.conftest import TOWN_RASTER, town_pixels, write_raster


def test_rgb_is_found_by_colour_interpretation_in_any_band_order(tmp_path):
    pixels, _ = town_pixels()
    bgr_nir = np.concatenate([pixels[::-1, 512:640, 512:640], pixels[:1, 512:640, 512:640]])
    path = write_raster(tmp_path / "bgrn.tif", bgr_nir,
                        colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined])
    assert describe(path, None, 3).bands == (3, 2, 1)


def test_explicit_bands_and_their_errors(tmp_path):
    pixels, _ = town_pixels()
    four = np.concatenate([pixels[:, 512:576, 512:576], pixels[:1, 512:576, 512:576]])
    path = write_raster(tmp_path / "four.tif", four)
    assert describe(path, (4, 3, 2), 3).bands == (4, 3, 2)
    with pytest.raises(RasterError, match=r"four.tif: has 4 band\(s\); band\(s\) \[7\] requested"):
        describe(path, (7, 3, 2), 3)
    with pytest.raises(RasterError, match="2 band.* requested but the model takes 3"):
        describe(path, (1, 2), 3)


def test_grey_raster_feeds_its_band_to_every_channel(tmp_path):
    pixels, _ = town_pixels()
    path = write_raster(tmp_path / "grey.tif", pixels[:1, 512:576, 512:576].copy())
    source = describe(path, None, 3)
    assert source.bands == (1, 1, 1)
    with open_dataset(path) as ds:
        tile, valid = read_window(ds, source, (0, 0, 64, 64), 32)
    assert tile.shape == (3, 32, 32) and valid == 1.0
    assert np.array_equal(tile[0], tile[1]) and np.array_equal(tile[1], tile[2])


def test_uint16_is_stretched_by_2_98_percentiles(tmp_path):
    pixels, _ = town_pixels()
    wide = (pixels[:, 512:768, 512:768].astype(np.uint16) * 37 + 1000)
    path = write_raster(tmp_path / "u16.tif", wide)
    source = describe(path, None, 3)
    low, high = source.stretch[0]
    assert low == pytest.approx(np.percentile(wide[0], 2), rel=0.02)
    assert high == pytest.approx(np.percentile(wide[0], 98), rel=0.02)
    with open_dataset(path) as ds:
        tile, _ = read_window(ds, source, (0, 0, 256, 256), 256)
    assert tile.dtype == np.uint8
    # About 2 % of pixels clip at each end, the rest spreads over the range.
    assert 0.005 < (tile[0] == 0).mean() < 0.05 and 0.005 < (tile[0] == 255).mean() < 0.05


def test_float_raster_with_nodata_value_excludes_nodata_from_stretch_and_skips_nodata_tiles(tmp_path):
    pixels, _ = town_pixels()
    data = pixels[:, 512:768, 512:768].astype(np.float32) / 255.0
    data[:, :128, :] = -9999.0  # top half is nodata
    path = write_raster(tmp_path / "f32.tif", data, nodata=-9999.0)
    source = describe(path, None, 3)
    assert 0.0 <= source.stretch[0][0] < source.stretch[0][1] <= 1.0
    grid = resolve_grid(source, TilingParams(tile_px=64, stride_px=64), 32)
    with open_dataset(path) as ds:
        kept = {w[1] for w, tile in read_tiles(ds, source, tile_windows(256, 256, grid), 32, 0.5)
                if tile is not None}
    assert kept == {128, 192}  # only the rows of the valid bottom half


def test_alpha_band_masks_and_is_not_fed_to_the_model(tmp_path):
    pixels, _ = town_pixels()
    rgba = np.concatenate([pixels[:, 512:640, 512:640], np.full((1, 128, 128), 255, np.uint8)])
    rgba[3, :, :64] = 0  # left half transparent
    path = write_raster(tmp_path / "rgba.tif", rgba,
                        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha])
    source = describe(path, None, 3)
    assert source.bands == (1, 2, 3)
    with open_dataset(path) as ds:
        _, valid = read_window(ds, source, (0, 0, 128, 128), 32)
    assert valid == pytest.approx(0.5)


def test_flat_tiles_are_skipped_as_empty(tmp_path):
    pixels, _ = town_pixels()
    data = pixels[:, 512:640, 512:640].copy()
    data[:, :, :64] = 0  # black fill, not declared nodata (as in the bundled sample's corner)
    path = write_raster(tmp_path / "black.tif", data)
    source = describe(path, None, 3)
    with open_dataset(path) as ds:
        kept = [w for w, tile in read_tiles(ds, source, [(0, 0, 64, 64), (64, 0, 64, 64)], 32, 0.5)
                if tile is not None]
    assert kept == [(64, 0, 64, 64)]


def test_broken_file_is_a_raster_error_naming_it(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(TOWN_RASTER.read_bytes()[:300])
    with pytest.raises(RasterError) as caught:
        describe(path, None, 3)
    assert "broken.tif" in str(caught.value)
