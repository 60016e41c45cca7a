"""Damage that search used not to see (issue 20, items 9, 10, 19): files swapped between indexes, edited
catalog rows, flipped manifest digits, damaged vectors, a moved tombstone. Search refuses each with one
line; a refresh rebuilds from the shards."""
from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import IndexStoreError
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader, verify_generation
from rsir_qgis_plugin.core.store.integrity import SAMPLE_BLOCK, SAMPLE_BLOCKS, SAMPLE_END

from .conftest import ROOT, one_line_error, params, run_cli


def manifest_of(index: Path) -> dict:
    return json.loads((index / MANIFEST).read_text())


def results(index: Path, queries: np.ndarray) -> list:
    """What search gives: per query, the k=8 (score, raster, window) of its hits, or "refused"."""
    with IndexReader(index) as reader:
        found = []
        for query in queries:
            try:
                scores, ids = reader.search(query, 8)
                found.append([(round(float(s), 5), t.raster.path, t.window)
                              for s, t in zip(scores, reader.tiles(ids.tolist()))])
            except IndexStoreError:
                found.append("refused")
        return found


def stored_vectors(index: Path) -> np.ndarray:
    """Every live tile's vector, in id order."""
    with IndexReader(index) as reader:
        return np.concatenate([reader.vectors(s.live_local_ids() + s.base) for s in reader.segments])


def unsampled_offset(size: int, start: int, step: int) -> int:
    """An offset >= start, on a `step` boundary, that the open-time sample of a file of `size` bytes skips."""
    blocks = [(size * i // (SAMPLE_BLOCKS + 1), SAMPLE_BLOCK) for i in range(1, SAMPLE_BLOCKS + 1)]
    spans = [(0, SAMPLE_END), (size - SAMPLE_END, SAMPLE_END), *blocks]
    offset = start
    while any(a - step < offset < a + n for a, n in spans):
        offset += step
    assert offset < size - SAMPLE_END
    return offset


@pytest.fixture
def other_index(tmp_path, tiny_model) -> Path:
    """A second index of the same size (two 16-tile rasters) of other rasters: the crop flipped two ways."""
    from rasterio.windows import Window, transform

    from tests.conftest import town_pixels, write_raster

    pixels, profile = town_pixels()
    crop = pixels[:, 256:640, 512:896]
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    where = transform(Window(512, 256, 384, 384), profile["transform"])
    crops = [write_raster(folder / f"flipped{axis}.tif", np.flip(crop, axis).copy(), crs=profile["crs"],
                          transform=where) for axis in (1, 2)]  # the same tiles kept, other embeddings
    index = tmp_path / "other"
    build_index(params(index, crops, tiny_model))
    return index


@pytest.mark.parametrize("name", ["catalog", "vectors"])
def test_a_file_swapped_with_another_index_s_of_the_same_size_is_refused_at_open_and_rebuilt(
        built, other_index, tiny_model, two_rasters, name):
    mine, theirs = (index / manifest_of(index)["segments"][0][name] for index in (built, other_index))
    if name == "vectors":
        assert mine.stat().st_size == theirs.stat().st_size
    shutil.copy(theirs, mine)
    with pytest.raises(IndexStoreError, match="not the (catalog|vectors file) the manifest names"):
        IndexReader(built)
    one_line_error(run_cli("search", built, "--raster", two_rasters[0], "--bbox", 13467660, 1631950, 13467670,
                           1631960), mine.name, "index build")
    if name == "catalog":
        return  # a refresh rebuilds it from this index's shards, not the rows: test_data_loss_2.py
    summary = build_index(params(built, [], tiny_model))
    assert summary.repaired and summary.tiles_total == 32 and summary.tiles_indexed == 0
    with IndexReader(built) as reader:
        assert {r.path for r in reader.rasters.values()} == {str(r) for r in two_rasters}


def test_an_edited_tile_row_is_refused_when_it_would_be_a_hit_and_a_refresh_rebuilds_it(built, tiny_model):
    vectors = stored_vectors(built)
    catalog = built / manifest_of(built)["segments"][0]["catalog"]
    with sqlite3.connect(catalog) as db:
        db.execute("UPDATE tiles SET col = col + 96, xmin = xmin + 9.6, xmax = xmax + 9.6 WHERE id = 5")
    with IndexReader(built) as reader, pytest.raises(IndexStoreError, match="tile 5's row does not match"):
        reader.tiles(reader.search(vectors[5], 3)[1].tolist())
    assert "catalog.sqlite does not match" in build_index(params(built, [], tiny_model)).repaired
    assert results(built, vectors[[5]])[0][0][0] == 1.0


def test_an_edited_raster_row_is_refused_at_open(built):
    catalog = built / manifest_of(built)["segments"][0]["catalog"]
    with sqlite3.connect(catalog) as db:
        db.execute("UPDATE rasters SET transform = '[0.2, 0.0, 13467600.0, 0.0, -0.2, 1632000.0]' "
                   "WHERE id = 1")
    with pytest.raises(IndexStoreError, match="raster 1's row does not match"):
        IndexReader(built)


def test_every_manifest_digit_flipped_is_refused_at_open_or_changes_nothing(built):
    """One digit at a time, as a bit flip in a number would: never a silently different search."""
    vectors = stored_vectors(built)
    queries = vectors[[0, 7, 20, 31]]
    expected = results(built, queries)
    text = (built / MANIFEST).read_text()
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    silent = []
    for i in digits:
        flipped = str((int(text[i]) + 1) % 10)
        (built / MANIFEST).write_text(text[:i] + flipped + text[i + 1:])
        try:
            got = results(built, queries)
        except IndexStoreError:
            continue
        if any(g != e and g != "refused" for g, e in zip(got, expected)):
            silent.append(text[max(0, i - 30):i + 5])
    (built / MANIFEST).write_text(text)
    assert len(digits) > 100 and silent == []


def test_a_flipped_segment_base_is_damage_that_a_refresh_repairs(built, tiny_model):
    manifest = manifest_of(built)
    manifest["segments"][0]["base"] = 16
    manifest["next_tile"] = 48  # consistent with the flipped base: only the catalog can tell
    (built / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="base 0 \\(manifest: 16\\)"):
        IndexReader(built)
    summary = build_index(params(built, [], tiny_model))
    assert "base" in summary.repaired and summary.tiles_total == 32
    vectors = stored_vectors(built)
    with IndexReader(built) as reader:  # every hit's row is its vector's
        scores, ids = reader.search(vectors[9], 1)
        assert ids[0] == reader.segments[0].base + 9 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_a_vector_with_a_flipped_exponent_bit_is_refused_by_search_not_ranked_first(tmp_path):
    """A 20,000-tile segment (10 MB of vectors): the open-time sample misses most of it, search does not."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic_index import write_synthetic_index

    base = np.random.default_rng(1).standard_normal((64, 128)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    index = tmp_path / "idx"
    segment = write_synthetic_index(index, 20_000, base)["segments"][0]
    assert segment["kind"] == "flat"
    vectors_file = index / segment["vectors"]
    size = vectors_file.stat().st_size
    data_start = size - 20_000 * 128 * 4
    offset = unsampled_offset(size, data_start + 5_000 * 512, 4)
    row, column = divmod((offset - data_start) // 4, 128)
    query = stored_vectors(index)[row].copy()
    query[column] = 1.0 if query[column] >= 0 else -1.0  # a query that leans on the damaged component
    query /= np.linalg.norm(query)
    data = bytearray(vectors_file.read_bytes())
    data[offset + 3] ^= 0x40  # the top exponent bit of a float32: 0.05 becomes ~1.7e37
    vectors_file.write_bytes(bytes(data))
    with IndexReader(index) as reader, pytest.raises(IndexStoreError, match="outside \\[-1, 1\\]"):
        reader.search(query, 10)
    assert "vectors.faiss does not match the checksum" in verify_generation(index, manifest_of(index))


def test_a_tombstone_range_moved_onto_live_tiles_is_a_damaged_manifest_that_a_refresh_repairs(
        built, tiny_model, two_rasters):
    import os

    os.utime(two_rasters[1], ns=(1, 1))  # re-embedded: its old tiles are tombstoned in the first segment
    build_index(params(built, [], tiny_model))
    manifest = manifest_of(built)
    first = manifest["segments"][0]
    (start, end), = first["dead_ranges"]
    moved = [16, 32] if start == 0 else [0, 16]
    first["dead_ranges"] = [moved]
    (built / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="damaged index manifest.*tombstones"):
        IndexReader(built)
    one_line_error(run_cli("search", built, "--raster", two_rasters[0], "--bbox", 13467660, 1631950, 13467670,
                           1631960), "manifest.json", "damaged index manifest", "index build")
    summary = build_index(params(built, [], tiny_model))
    assert "tombstones" in summary.repaired and summary.tiles_total == 32 and summary.tiles_indexed == 0
    with IndexReader(built) as reader:
        assert sorted(r.path for r in reader.rasters.values()) == sorted(str(r) for r in two_rasters)


def test_compact_of_an_index_whose_model_moved_names_the_index_s_model_and_how_to_pass_it(
        tmp_path, tiny_model, town_crop):
    model = Path(shutil.copy(tiny_model, tmp_path / "mine.onnx"))
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], model))
    model.rename(tmp_path / "moved.onnx")
    for command in (("index", "compact", index), ("index", "build", index)):
        line = one_line_error(run_cli(*command), str(model), "not found", "--model")
        assert "the model given" not in line and "default" not in line, line
    done = run_cli("index", "compact", index, "--model", tmp_path / "moved.onnx")
    assert done.returncode == 0, done.stderr


def synthetic_shards(count: int, dim: int, per_raster: int) -> dict:
    """Shards of `count` random unit vectors on real tile geometry (per_raster tiles a virtual raster)."""
    from rsir_qgis_plugin.core.store import Shard

    rng = np.random.default_rng(0)
    shards = {}
    for number, start in enumerate(range(0, count, per_raster)):
        n = min(per_raster, count - start)
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        side = int(np.ceil(np.sqrt(n)))
        cols, rows = np.arange(n) % side * 8, np.arange(n) // side * 8
        windows = np.stack([cols, rows, np.full(n, 8), np.full(n, 8)], axis=1).astype(np.int64)
        bounds = np.stack([cols, -(rows + 8), cols + 8, -rows], axis=1).astype(np.float64)
        record = {"path": f"/archive/r{number}.tif", "size": 0, "mtime_ns": 0, "crs_wkt": "",
                  "width": side * 8, "height": side * 8, "transform": [1.0, 0.0, 0.0, 0.0, -1.0, 0.0],
                  "bands": [1, 2, 3],
                  "stretch": None, "tiling": {"tile_px": 8, "stride_px": 8, "min_valid_fraction": 0.5},
                  "tile_px": 8, "stride_px": 8, "skipped": 0}
        shards[f"r{number:04d}"] = Shard(vectors, windows, bounds, np.full((n, 4), np.nan), record)
    return shards


def small_model(dim: int):
    """The bundled model's identity with a smaller embedding size: segments of a million tiles stay small."""
    import dataclasses

    from rsir_qgis_plugin.core.model import read_model

    model = read_model(None)
    return dataclasses.replace(model, contract=dataclasses.replace(model.contract, embedding_dim=dim))


def flip_unsampled_byte(path: Path, start: int) -> None:
    data = bytearray(path.read_bytes())
    data[unsampled_offset(len(data), start, 2)] ^= 0x80  # a sign bit of a float16 (or a float32's byte)
    path.write_bytes(bytes(data))


def test_an_ivfpq_segment_s_float16_copy_is_checksummed(tmp_path, monkeypatch):
    from rsir_qgis_plugin.core.store import vectors, write_generation

    monkeypatch.setattr(vectors, "COMPRESS_THRESHOLD", 1_000)  # 2,000,000 in use: too large for a test
    index = tmp_path / "idx"
    index.mkdir()
    manifest = write_generation(index, synthetic_shards(6_000, 32, 2_000), small_model(32), None, None)
    segment, = manifest["segments"]
    assert segment["kind"] == "ivfpq" and segment["f16_sha256"]
    assert verify_generation(index, manifest) is None
    flip_unsampled_byte(index / segment["f16"], 0)
    assert "vectors.f16 does not match the checksum" in verify_generation(index, manifest)


@pytest.mark.slow  # a segment of a million tiles
def test_a_segment_of_over_a_million_tiles_is_checksummed_too(tmp_path):
    """No size limit: 1,000,001 tiles (4-d vectors, so the files stay small) are read through by the build."""
    from rsir_qgis_plugin.core.store import write_generation

    index = tmp_path / "idx"
    index.mkdir()
    manifest = write_generation(index, synthetic_shards(1_000_001, 4, 250_000), small_model(4), False, None)
    segment, = manifest["segments"]
    assert segment["tiles"] == 1_000_001 and segment["kind"] == "flat"
    flip_unsampled_byte(index / segment["vectors"], (index / segment["vectors"]).stat().st_size // 2)
    assert "vectors.faiss does not match the checksum" in verify_generation(index, manifest)
