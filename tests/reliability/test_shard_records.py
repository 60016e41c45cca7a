"""A shard's record (the raster's size, CRS, transform, bands, tiling) is verified like its arrays (issue 20,
items 11 and 15): an edited or malformed record is rejected by name, never indexed, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.store import Shard, ShardError

from .conftest import run_cli


def shard_files(index: Path) -> list[Path]:
    return sorted((index / "shards").glob("*.npz"))


def rewrite_shard(path: Path, edit, old_format: bool = False) -> None:
    """Rewrite a shard file with its record edited; arrays and array checksum untouched.

    `old_format` drops the record checksum, as in shards of rsir before it.
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    record = json.loads(str(arrays["record"]))
    text = edit(record)
    arrays["record"] = np.array(text if isinstance(text, str) else json.dumps(record))
    if old_format:
        arrays.pop("record_sha256", None)
    np.savez(path, **arrays)


def double_transform(record: dict) -> None:
    record["transform"] = [v * 2 for v in record["transform"]]


@pytest.mark.parametrize("old_format", [False, True], ids=["record-checksum", "shard-of-earlier-rsir"])
def test_a_shard_with_a_doubled_geotransform_fails_verification_and_repair_drops_it(built, tiny_model,
                                                                                     old_format):
    edited, kept = shard_files(built)
    rewrite_shard(edited, double_transform, old_format)
    with pytest.raises(ShardError, match="record does not match its checksum" if not old_format
                       else "bounds do not match the recorded geotransform"):
        Shard.load(edited)
    Shard.load(kept)
    done = run_cli("index", "repair", built, "--model", tiny_model)
    assert done.returncode == 0, done.stderr
    assert "1 shard(s) failed verification" in done.stdout and edited.name in done.stdout
    assert "16 tiles from 1 raster" in done.stdout


def test_a_shard_of_earlier_rsir_that_is_whole_still_verifies(built):
    path = shard_files(built)[0]
    before = Shard.load(path)
    rewrite_shard(path, lambda record: None, old_format=True)
    after = Shard.load(path)
    assert after.record == before.record and np.array_equal(after.vectors, before.vectors)


@pytest.mark.parametrize("edit", [
    lambda r: r.pop("path") and None,
    lambda r: r.pop("tiling") and None,
    lambda r: r.update(width="384"),
    lambda r: r.update(bands=[[1], 2, 3]),
    lambda r: r.update(tiling={"tile_px": 96, "colour": "blue"}),
    lambda r: "[" * 100_000 + "]" * 100_000,
    lambda r: '{"path": ' + "[" * 100_000,
], ids=["no-path", "no-tiling", "width-a-string", "bands-nested", "unknown-tiling-key", "nested-100000",
        "truncated-nested"])
def test_a_malformed_shard_record_is_rejected_by_name_in_repair_and_compact(built, tiny_model, edit):
    edited = shard_files(built)[0]
    rewrite_shard(edited, edit, old_format=True)  # no record checksum: the schema must catch it
    with pytest.raises(ShardError, match=edited.name):
        Shard.load(edited)
    compacted = run_cli("index", "compact", built, "--model", tiny_model)  # re-embeds that raster
    assert compacted.returncode == 0 and "Traceback" not in compacted.stderr, compacted.stderr
    assert "1 damaged shard(s) embedded again" in compacted.stdout, compacted.stdout
    rewrite_shard(edited, edit, old_format=True)
    done = run_cli("index", "repair", built, "--model", tiny_model)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "1 shard(s) failed verification" in done.stdout and edited.name in done.stdout
