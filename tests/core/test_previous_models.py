"""Indexes built with a superseded bundled model keep working after the plugin is upgraded (issue 22 item 2).

An index records its model's sha256 and path. The upgrade replaces models/default.onnx (and default-int8.onnx)
with the 160 px re-export; the files the index was built with now live in models/previous/, where
find_model looks for them by hash. Each test builds a real index with the previous file installed as
default.onnx, overwrites that file with today's default as an upgrade would, and searches and rebuilds.
"""
from __future__ import annotations

import shutil

import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.cache import release_shared
from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH, MODELS_DIR, PREVIOUS_MODELS_DIR, find_model, read_model
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.search import search_box
from rsir_qgis_plugin.core.store import read_index_info

pytestmark = pytest.mark.slow  # two builds and searches with the 20 MB bundled models (about 15 s each)

PREVIOUS = {"default.onnx": PREVIOUS_MODELS_DIR / "rsir-lite0-da-sncace-aid150-128px-ood.onnx",
            "default-int8.onnx": PREVIOUS_MODELS_DIR / "rsir-lite0-da-sncace-aid150-128px-ood-int8.onnx"}
TILING = TilingParams(tile_px=96, stride_px=48)
BOX = (13467690.0, 1631960.0, 13467699.6, 1631969.6)  # a 96 px box on the town crop (0.1 m pixels)


def test_the_previous_models_are_bundled_and_are_not_todays():
    for name, previous in PREVIOUS.items():
        old, new = read_model(previous), read_model(MODELS_DIR / name)
        assert old.sha256 != new.sha256
        assert (old.contract.input_size, old.contract.tile_px) == (128, 128)
        assert (new.contract.input_size, new.contract.tile_px) == (160, 128)


@pytest.mark.parametrize("name", sorted(PREVIOUS))
def test_an_index_built_with_the_previous_bundled_model_searches_and_builds_after_the_upgrade(
        tmp_path, town_crop, name):
    installed = tmp_path / "plugin" / "models" / name  # the plugin's models folder before the upgrade
    installed.parent.mkdir(parents=True)
    shutil.copyfile(PREVIOUS[name], installed)
    index = tmp_path / "idx"
    build_index(BuildParams(index_dir=index, rasters=(town_crop,), model_path=installed, tiling=TILING))
    before = search_box(index, town_crop, BOX, None, SearchParams(k=10))
    built_with = read_index_info(index).model

    shutil.copyfile(MODELS_DIR / name, installed)  # the upgrade: same path, today's model
    release_shared()  # a new QGIS session: no session or reader kept from before
    assert read_model(installed).sha256 != built_with["sha256"]
    found = find_model(built_with["sha256"], installed)
    assert found is not None and found.path == PREVIOUS[name].resolve()

    after = search_box(index, town_crop, BOX, None, SearchParams(k=10))  # no model given: the index's own
    assert [(h.tile_id, h.window) for h in after.hits] == [(h.tile_id, h.window) for h in before.hits]
    assert [h.score for h in after.hits] == pytest.approx([h.score for h in before.hits], abs=1e-6)
    # A later build with no model named keeps the index's model: nothing is embedded again.
    summary = build_index(BuildParams(index_dir=index, rasters=(town_crop,), tiling=TILING))
    assert (summary.rasters_unchanged, summary.tiles_indexed) == (1, 0)
    assert read_index_info(index).model["sha256"] == built_with["sha256"]


def test_a_new_index_is_built_with_todays_default(tmp_path, town_crop):
    build_index(BuildParams(index_dir=tmp_path / "idx", rasters=(town_crop,)))
    model = read_index_info(tmp_path / "idx").model
    assert model["sha256"] == read_model(DEFAULT_MODEL_PATH).sha256 and model["input_size"] == 160
