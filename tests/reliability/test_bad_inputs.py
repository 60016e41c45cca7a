"""One bad input never stops a whole build: link loops, FIFOs, models that fail at run time, NaN embeddings."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from onnx import helper

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.embedder import probe_tiles
from rsir_qgis_plugin.core.errors import ModelError
from rsir_qgis_plugin.core.store import IndexReader
from tests.core.test_model_probe import BANDS, SIZE, const, embed_nodes, save_model, weights

from .conftest import one_line_error, params, run_cli, snapshot


def test_a_symlink_loop_and_a_fifo_are_reported_and_the_rest_indexed(tmp_path, tiny_model, town_crop):
    loop = tmp_path / "loop.tif"
    os.symlink(tmp_path / "loop2.tif", loop)
    os.symlink(loop, tmp_path / "loop2.tif")
    fifo = tmp_path / "stream.tif"
    os.mkfifo(fifo)
    done = run_cli("index", "build", tmp_path / "idx", loop, fifo, town_crop, "--model", tiny_model,
                   "--tile-size", 96, "--stride", 96, timeout=120)  # a FIFO opened by GDAL would hang here
    assert done.returncode == 3, done.stderr
    assert "loop.tif" in done.stdout and "stream.tif" in done.stdout and "not a regular file" in done.stdout
    with IndexReader(tmp_path / "idx") as reader:
        assert reader.size == 16
    one_line_error(run_cli("search", tmp_path / "idx", "--raster", loop, "--bbox", 0, 0, 1, 1), "loop.tif")


def nan_on_dark_tiles_model(path, tiny_mean_offset: float):
    """Scales each embedding by sqrt(mean of the tile + offset): NaN for tiles darker than the probe's."""
    node = helper.make_node
    nodes = [*embed_nodes(out="rows"), node("ReduceMean", ["flat"], ["level"], axes=[1], keepdims=1),
             node("Add", ["level", "offset"], ["shifted"]), node("Sqrt", ["shifted"], ["gain"]),
             node("Mul", ["rows", "gain"], ["y"])]
    return save_model(path, nodes, [weights(), const("offset", tiny_mean_offset)])


def test_nan_embeddings_are_never_stored(tmp_path, town_crop):
    normalised = (probe_tiles(BANDS, SIZE) / 255.0 - 0.5) / 0.25  # save_model's mean 0.5, std 0.25
    offset = -normalised.reshape(len(normalised), -1).mean(axis=1).min() + 0.01  # the probe passes, just
    model = nan_on_dark_tiles_model(tmp_path / "nan_on_dark.onnx", float(offset))
    summary = build_index(params(tmp_path / "idx", [town_crop], model))
    assert summary.tiles_non_finite > 0 and summary.tiles_total == 16 - summary.tiles_non_finite > 0
    assert "NaN" in summary.describe()
    with IndexReader(tmp_path / "idx") as reader:
        assert np.isfinite(reader.vectors(range(reader.size))).all()


def test_a_model_that_fails_at_run_time_is_refused_before_any_raster_is_read(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], tiny_model))
    before = snapshot(index)
    broken = save_model(tmp_path / "wrong_size.onnx", embed_nodes(), [weights(7)], dim=4)  # gives 7, says 4
    fresh = tmp_path / "fresh"
    with pytest.raises(ModelError, match="wrong_size.onnx"):
        build_index(params(fresh, [town_crop], broken))
    assert not list((fresh / "shards").iterdir())  # no raster was embedded
    one_line_error(run_cli("index", "build", fresh, town_crop, "--model", broken), "wrong_size.onnx")
    assert snapshot(index) == before


def test_a_raster_given_twice_or_by_two_paths_is_indexed_once(tmp_path, tiny_model, town_crop):
    link = tmp_path / "link.tif"
    os.symlink(town_crop, link)
    copy = shutil.copy(town_crop, tmp_path / "copy.tif")
    summary = build_index(params(tmp_path / "idx", [town_crop, link, town_crop, copy], tiny_model))
    assert summary.rasters_indexed == 2 and summary.tiles_total == 32
