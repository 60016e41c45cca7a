"""A model's tile footprint (issue 22 item 2): `rsir.tile_size` in the contract, the default tile it gives,
tiles resampled from it to the input size, and reads served from an overview never coarser than the input.

Real ONNX models (the tiny test model with its metadata rewritten), real GeoTIFFs from the town sample with
overviews built by GDAL through rasterio.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import ModelError
from rsir_qgis_plugin.core.model import MAX_TILE_SIZE, ModelContract, read_model
from rsir_qgis_plugin.core.params import MIN_TILE_PX, BuildParams, TilingParams
from rsir_qgis_plugin.core.raster import describe
from rsir_qgis_plugin.core.store import IndexReader
from rsir_qgis_plugin.core.tiling import Grid, finer_overview_read, read_tiles, read_window, resolve_grid
from tests.conftest import town_pixels, write_raster

CONTRACT = ModelContract(name="m", embedding_dim=8, input_size=160, bands=3, mean=(0.5,) * 3, std=(0.25,) * 3)


def with_metadata(source, out, **props) -> str:
    """A copy of the ONNX model at `source` with metadata keys set (value None: removed)."""
    model = onnx.load(str(source))
    kept = {p.key: p.value for p in model.metadata_props}
    kept.update(props)
    del model.metadata_props[:]
    for key, value in kept.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(out))
    return out


# --- the contract -----------------------------------------------------------------------------------

def test_a_footprint_round_trips_through_the_metadata_beside_deepness_tile_size():
    contract = dataclasses.replace(CONTRACT, tile_size=128)
    props = contract.to_metadata()
    assert props["rsir.tile_size"] == "128"
    assert props["tile_size"] == "160"  # Deepness' key is the input it feeds, unchanged
    read = ModelContract.from_metadata(props, "m.onnx")
    assert (read.tile_size, read.tile_px, read.input_size) == (128, 128, 160)


def test_no_footprint_means_the_input_size_and_writes_no_key():
    props = CONTRACT.to_metadata()
    assert "rsir.tile_size" not in props  # models exported before keep the same metadata
    read = ModelContract.from_metadata(props, "m.onnx")
    assert read.tile_size is None and read.tile_px == 160


@pytest.mark.parametrize("value", [str(MIN_TILE_PX - 1), "0", "-128", str(MAX_TILE_SIZE + 1), "60000"])
def test_a_footprint_out_of_bounds_is_refused_naming_the_file(value):
    props = {**CONTRACT.to_metadata(), "rsir.tile_size": value}
    with pytest.raises(ModelError, match=rf"^m\.onnx: model 'm': tile size {value} px is outside what rsir takes"):
        ModelContract.from_metadata(props, "m.onnx")


@pytest.mark.parametrize("value", ["1.5", "128.0", "true", "big", "[128]", ""])
def test_a_footprint_that_is_not_a_whole_number_is_malformed(value):
    props = {**CONTRACT.to_metadata(), "rsir.tile_size": value}
    with pytest.raises(ModelError, match=r"^m\.onnx: malformed model metadata"):
        ModelContract.from_metadata(props, "m.onnx")


def test_a_real_model_file_with_a_footprint_is_read_and_described(tmp_path, tiny_model):
    path = with_metadata(tiny_model, tmp_path / "footprint.onnx", **{"rsir.tile_size": "48"})
    info = read_model(path)
    assert (info.contract.input_size, info.contract.tile_px) == (64, 48)
    assert "64 px input (tiles of 48 px resampled to it)" in info.describe()
    assert read_model(tiny_model).contract.tile_px == 64  # the file without the key: as before
    from rsir_qgis_plugin.model_choice import model_facts, readable_card

    assert dict(model_facts(info))["Input"] == "64 px from 48 px tiles, 3 bands"
    assert "Input: 48 px tiles, each resampled to 64 px, 3 bands" in readable_card(info)
    assert dict(model_facts(read_model(tiny_model)))["Input"] == "64 px, 3 bands"
    bad = with_metadata(tiny_model, tmp_path / "bad.onnx", **{"rsir.tile_size": "100000"})
    with pytest.raises(ModelError, match="tile size 100000 px is outside"):
        read_model(bad)


# --- tiles from the footprint ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def town_with_overviews(tmp_path_factory):
    """The 1024 px town sample as a GeoTIFF with 2x and 4x overviews (GDAL's average), and a copy
    without overviews: reads from the copy show what the full resolution gives."""
    folder = tmp_path_factory.mktemp("overviews")
    pixels, profile = town_pixels()
    plain = write_raster(folder / "plain.tif", pixels, crs=profile["crs"], transform=profile["transform"])
    with_overviews = write_raster(folder / "overviews.tif", pixels, crs=profile["crs"],
                                  transform=profile["transform"])
    with rasterio.open(with_overviews, "r+") as dataset:
        dataset.build_overviews([2, 4], Resampling.average)
    levels = {}
    for factor, level in ((2, 0), (4, 1)):  # each overview alone, as its own raster
        with rasterio.open(with_overviews, overview_level=level) as overview:
            levels[factor] = write_raster(folder / f"level{factor}.tif", overview.read())
    return plain, with_overviews, levels


def read_as_gdal(path, window, size) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(window=Window(*window), out_shape=(3, size, size),
                            resampling=Resampling.bilinear).astype(float)


def test_the_default_tile_is_the_footprint_resampled_to_the_input(town_with_overviews):
    plain, with_overviews, _ = town_with_overviews
    contract = dataclasses.replace(CONTRACT, tile_size=128)
    source = describe(with_overviews, None, 3)
    grid = resolve_grid(source, TilingParams(), contract.tile_px)
    assert grid == Grid(tile_px=128, stride_px=64)
    windows = [(384, 384, 128, 128), (448, 384, 128, 128), (448, 512, 128, 128)]
    with rasterio.open(with_overviews) as dataset:
        tiles = list(read_tiles(dataset, source, windows, contract.input_size, 0.5))
    for window, tile in tiles:
        assert tile.shape == (3, 160, 160)
        # Upsampled from the full resolution, as GDAL reads the raster without overviews: no level is coarser.
        np.testing.assert_array_equal(tile, read_as_gdal(plain, window, 160))
    assert not np.array_equal(tiles[0][1], tiles[1][1])


def test_a_window_gdal_would_serve_from_a_coarser_overview_is_read_from_the_finer_one(town_with_overviews):
    """560 px read at 160 px: GDAL 3.6 takes the 4x level (140 px across the window, stretched to 160);
    rsir reads the 2x level's 280 px."""
    _, with_overviews, levels = town_with_overviews
    window = (200, 300, 560, 560)
    source = describe(with_overviews, None, 3)
    with rasterio.open(with_overviews) as dataset:
        assert finer_overview_read(dataset, window, 160)
        tile, valid = read_window(dataset, source, window, 160)
    assert tile.shape == (3, 160, 160) and valid == 1.0
    from_finer = read_as_gdal(levels[2], [v / 2 for v in window], 160)
    from_coarser = read_as_gdal(levels[4], [v / 4 for v in window], 160)
    near_finer = np.abs(tile - from_finer).mean()
    near_coarser = np.abs(tile - from_coarser).mean()
    assert near_finer < 0.5 * near_coarser, (near_finer, near_coarser)
    # The detail is the finer level's: more contrast between neighbouring pixels than the stretched 4x level.
    assert np.abs(np.diff(tile.astype(float), axis=2)).mean() > 1.1 * np.abs(np.diff(from_coarser, axis=2)).mean()


def test_windows_gdal_serves_from_a_fine_enough_level_are_read_as_before(town_with_overviews):
    plain, with_overviews, levels = town_with_overviews
    source = describe(with_overviews, None, 3)
    with rasterio.open(with_overviews) as dataset:
        for window, size in (((0, 0, 512, 512), 160), ((100, 100, 330, 330), 160), ((0, 0, 256, 256), 160),
                             ((0, 0, 256, 256), 128)):
            assert not finer_overview_read(dataset, window, size)
            tile, _ = read_window(dataset, source, window, size)
            np.testing.assert_array_equal(tile, read_as_gdal(with_overviews, window, size))
    with rasterio.open(plain) as dataset:  # no overviews: nothing to avoid
        assert not finer_overview_read(dataset, (200, 300, 560, 560), 160)


def test_an_index_of_a_model_with_a_footprint_has_tiles_of_the_footprint(tmp_path, tiny_model, town_crop):
    model = with_metadata(tiny_model, tmp_path / "footprint.onnx", **{"rsir.tile_size": "48"})
    summary = build_index(BuildParams(index_dir=tmp_path / "idx", rasters=(town_crop,), model_path=model))
    with IndexReader(tmp_path / "idx") as reader:
        windows = [tile.window for tiles, _ in reader.iter_tiles() for tile in tiles]
    # 384 px at 48 px tiles and a 24 px stride: 15 x 15 windows; the model sees each at 64 px.
    assert summary.tiles_total == len(windows) == 225
    assert {window[2:] for window in windows} == {(48, 48)}
    assert sorted({window[0] for window in windows}) == list(range(0, 337, 24))
