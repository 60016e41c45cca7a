"""Deeply nested or malformed JSON in the files rsir reads (issue 20, item 15): one line naming the file,
never a RecursionError traceback. Shard records: tests/reliability/test_shard_records.py."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from rsir_qgis_plugin.core import safe_json
from rsir_qgis_plugin.core.errors import IndexStoreError, ModelError
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader

from .conftest import one_line_error, run_cli

NESTED = "[" * 100_000 + "]" * 100_000


def test_depth_is_measured_without_recursion_and_strings_do_not_count():
    assert safe_json.nesting_depth(NESTED) == 100_000
    assert safe_json.nesting_depth('{"a": "[[[[\\"[[", "b": [1, [2]]}') == 3
    with pytest.raises(safe_json.JsonLimitError, match="100,000 levels"):
        safe_json.loads(NESTED)
    with pytest.raises(safe_json.JsonLimitError, match="over the limit of 10"):
        safe_json.loads("[" + "1," * 10 + "1]", max_bytes=10)
    assert safe_json.loads('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


def test_a_deeply_nested_manifest_is_one_line_naming_it(built):
    (built / MANIFEST).write_text('{"format": "rsir-index", "segments": ' + NESTED + "}")
    with pytest.raises(IndexStoreError, match="manifest.json: unreadable index manifest"):
        IndexReader(built)
    for args in (("index", "info", built), ("index", "build", built), ("search", built, "--image", built)):
        one_line_error(run_cli(*args), "manifest.json")


@pytest.mark.parametrize("column", ["transform", "bands", "stretch", "tiling"])
def test_a_deeply_nested_catalog_column_is_one_line_naming_the_catalog(built, tiny_model, column):
    catalog = built / json.loads((built / MANIFEST).read_text())["segments"][0]["catalog"]
    with sqlite3.connect(catalog) as db:
        db.execute(f"UPDATE rasters SET {column} = ? WHERE id = 1", (NESTED,))
    with pytest.raises(IndexStoreError, match="catalog.sqlite: unreadable catalog"):
        IndexReader(built)
    one_line_error(run_cli("search", built, "--image", catalog), "catalog.sqlite")
    refreshed = run_cli("index", "build", built, "--model", tiny_model)  # rebuilt from the shards
    assert refreshed.returncode == 0 and "Traceback" not in refreshed.stderr, refreshed.stderr


def with_training(model: Path, text: str, out: Path) -> Path:
    import onnx

    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == "rsir.training":
            prop.value = text
    onnx.save(proto, str(out))
    return out


def test_a_model_whose_card_is_deeply_nested_is_one_line_naming_the_model(tmp_path, tiny_model, town_crop):
    from rsir_qgis_plugin.core.model import read_model

    model = with_training(tiny_model, NESTED, tmp_path / "nested.onnx")
    with pytest.raises(ModelError, match="nested.onnx: malformed model metadata"):
        read_model(model)
    one_line_error(run_cli("index", "build", tmp_path / "idx", town_crop, "--model", model), "nested.onnx")
