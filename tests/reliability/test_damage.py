"""A damaged index is never read as if it were whole, every fault is one line naming the file, and a
refresh rebuilds what is damaged."""
from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import threading

import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import IndexStoreError
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader

from .conftest import NOBODY, one_line_error, params, run_cli, snapshot


def manifest_of(index):
    return json.loads((index / MANIFEST).read_text())


def test_manifest_counts_are_checked_against_the_files(built, tiny_model):
    manifest = manifest_of(built)
    (built / MANIFEST).write_text(json.dumps({**manifest, "tile_count": 31}))
    with pytest.raises(IndexStoreError, match="manifest records 31"):
        IndexReader(built)
    summary = build_index(params(built, [], tiny_model))
    assert "manifest records 31" in summary.repaired and summary.tiles_total == 32
    with IndexReader(built) as reader:
        assert reader.size == 32


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_vectors_file_is_refused_then_rebuilt_by_a_refresh(built, tiny_model, two_rasters, damage):
    vectors = built / manifest_of(built)["segments"][0]["vectors"]
    data = bytearray(vectors.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-100] ^= 0xFF  # the same size: only the checksum tells
    vectors.write_bytes(bytes(data))
    if damage == "truncate":
        one_line_error(run_cli("search", built, "--raster", two_rasters[0], "--bbox", 0, 0, 1, 1),
                       vectors.name, "index build")
    summary = build_index(params(built, [], tiny_model))
    assert summary.repaired and summary.tiles_total == 32 and summary.tiles_indexed == 0
    assert "rewritten" in summary.describe()
    with IndexReader(built) as reader:
        assert reader.size == 32
    assert not build_index(params(built, [], tiny_model)).repaired  # whole again


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_missing_or_corrupt_catalog_is_one_line_and_a_refresh_rebuilds_it(built, tiny_model, damage):
    catalog = built / manifest_of(built)["segments"][0]["catalog"]
    if damage == "missing":
        catalog.unlink()
    else:
        catalog.write_bytes(b"this is not an SQLite database" * 100)
    for args in (("index", "info", built), ("search", built, "--image", catalog)):
        one_line_error(run_cli(*args), catalog.name)
    summary = build_index(params(built, [], tiny_model))
    assert summary.repaired and summary.tiles_total == 32 and summary.tiles_indexed == 0
    with IndexReader(built) as reader:
        assert reader.size == 32


@pytest.mark.parametrize("content", ['[1, 2]', '{"format": "rsir-index", "generation": "one"}',
                                     '{"format": "rsir-index", "format_version": 2, "generation": 1, '
                                     '"catalog": "../../etc/passwd", "vectors": "vectors-1.faiss", '
                                     '"index_kind": "flat", "model": {}, "tile_count": 1, "raster_count": 1, '
                                     '"built_at": ""}'])
def test_a_manifest_of_the_wrong_shape_is_one_line(built, content):
    (built / MANIFEST).write_text(content)
    one_line_error(run_cli("index", "info", built), "manifest", "index repair")


def test_a_directory_inside_shards_does_not_stop_a_build(built, tiny_model, two_rasters):
    (built / "shards" / "stray.npz").mkdir()
    (built / "shards" / "notes").mkdir()
    os.utime(two_rasters[1], ns=(1, 1))  # changed: a commit, which cleans up the shards folder
    summary = build_index(params(built, [], tiny_model))
    assert summary.tiles_total == 32 and summary.rasters_indexed == 1
    assert (built / "shards" / "stray.npz").is_dir()


def test_a_read_only_index_folder_is_one_line(shared_folder, tiny_model, town_crop):
    model = shutil.copy(tiny_model, shared_folder / "model.onnx")
    raster = shutil.copy(town_crop, shared_folder / "a.tif")
    index = shared_folder / "idx"
    build_index(params(index, [raster], model))
    before = snapshot(index)
    one_line_error(run_cli("index", "build", index, raster, "--model", model, user=NOBODY),
                   str(index), "permission")
    one_line_error(run_cli("index", "build", shared_folder / "new-idx", raster, "--model", model, user=NOBODY),
                   "new-idx", "permission")
    assert snapshot(index) == before


def test_a_full_disk_is_one_line_and_leaves_no_half_written_generation(built, tiny_model, two_rasters):
    before = snapshot(built)
    os.utime(two_rasters[1], ns=(1, 1))  # the refresh must re-embed and write a new generation
    limit = max(p.stat().st_size for p in built.rglob("*") if p.is_file()) // 2
    done = run_cli("index", "build", built, "--model", tiny_model,
                   limits=[(resource.RLIMIT_FSIZE, limit)])
    one_line_error(done, "disk is full", "previous index is unchanged")
    after = snapshot(built)
    assert {k: v for k, v in after.items() if not k.startswith("shards/")} == {
        k: v for k, v in before.items() if not k.startswith("shards/")}
    assert not [p for p in built.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert build_index(params(built, [], tiny_model)).tiles_total == 32  # and the next build goes through


def test_index_files_follow_the_umask(tmp_path, tiny_model, town_crop):
    old = os.umask(0o002)  # a team folder: group-writable files
    try:
        build_index(params(tmp_path / "idx", [town_crop], tiny_model))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "idx").rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o664}, modes


def test_readers_opening_during_commits_never_fail(built, tiny_model):
    """Readers open the index over and over while a writer commits generation after generation."""
    errors, opened, stop = [], [], threading.Event()

    def read_repeatedly():
        while not stop.is_set():
            try:
                with IndexReader(built) as reader:
                    opened.append(reader.size)
            except Exception as exc:  # noqa: BLE001 - any failure is the bug under test
                errors.append(exc)

    readers = [threading.Thread(target=read_repeatedly) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for round_ in range(6):  # alternate exact and IVF: each build commits a new generation
            build_index(params(built, [], tiny_model, approximate=bool(round_ % 2)))
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert errors == [] and opened and set(opened) == {32}
    assert manifest_of(built)["generation"] >= 6  # rounds 1-5 each changed the index kind


def test_catalog_is_read_only_for_readers(built):
    with IndexReader(built) as reader, pytest.raises(sqlite3.OperationalError):
        reader.segments[0].db.execute("DELETE FROM tiles")
