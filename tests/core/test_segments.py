"""Segments on real files: a kill in the middle of writing one, and indexes of the format before segments."""
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader
from tests.core.test_index import ROOT, copy_raster, params

KILL_IN_SEGMENT_SCRIPT = """
import os, signal, sys
from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.core.store import segments
write_catalog = segments.write_catalog
def write_then_die(*args, **kwargs):
    write_catalog(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # the new segment's catalog is written, its vectors are not
segments.write_catalog = write_then_die
index, model, *rasters = sys.argv[1:]
build_index(BuildParams(index_dir=index, rasters=tuple(rasters), model_path=model,
                        tiling=TilingParams(tile_px=96, stride_px=96)))
"""


def test_sigkill_while_writing_a_segment_leaves_the_previous_index_and_the_next_build_finishes(
        tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], tiny_model))
    before = (index / MANIFEST).read_bytes()
    rasters = [str(copy_raster(tmp_path, f"k{i}.tif", town_crop)) for i in range(2)]
    killed = subprocess.run([sys.executable, "-c", KILL_IN_SEGMENT_SCRIPT, str(index), str(tiny_model), *rasters],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (index / MANIFEST).read_bytes() == before
    assert [p.name for p in (index / "segments").iterdir() if p.name.startswith(".")]  # the half segment
    with IndexReader(index) as reader:
        assert reader.size == 16
    resumed = build_index(params(index, [Path(r) for r in rasters], tiny_model))
    assert resumed.rasters_resumed == 2 and resumed.tiles_indexed == 0 and resumed.tiles_total == 48
    assert not [p for p in (index / "segments").iterdir() if p.name.startswith(".")]


def test_an_index_of_the_format_before_segments_is_read_and_updated(tmp_path, tiny_model, town_crop):
    """Format 2: one catalog-N.sqlite and vectors-N.faiss at the top, named by the manifest."""
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], tiny_model))
    manifest = json.loads((index / MANIFEST).read_text())
    segment, = manifest["segments"]
    shutil.move(index / segment["catalog"], index / "catalog-1.sqlite")
    shutil.move(index / segment["vectors"], index / "vectors-1.faiss")
    shutil.rmtree(index / "segments")
    with sqlite3.connect(index / "catalog-1.sqlite") as db:  # the schema of format 2 had no first_tile
        db.execute("ALTER TABLE rasters DROP COLUMN first_tile")
    legacy = {"format": "rsir-index", "format_version": 2, "generation": 1, "catalog": "catalog-1.sqlite",
              "vectors": "vectors-1.faiss", "index_kind": "flat", "model": manifest["model"], "tile_count": 16,
              "raster_count": 1, "built_at": manifest["built_at"]}
    (index / MANIFEST).write_text(json.dumps(legacy))
    with IndexReader(index) as reader:
        assert reader.size == 16
        query = reader.vectors([3])[0]
        assert reader.search(query, 1)[1][0] == 3
    second = copy_raster(tmp_path, "second.tif", town_crop)
    summary = build_index(params(index, [second], tiny_model))
    assert summary.rasters_unchanged == 1 and summary.tiles_total == 32
    upgraded = json.loads((index / MANIFEST).read_text())
    assert upgraded["format_version"] == 3 and len(upgraded["segments"]) == 2
    with IndexReader(index) as reader:
        ids = reader.search(np.asarray(query), 32)[1]
        assert len(set(ids.tolist())) == 32 and reader.search(query, 1)[1][0] == 3


def test_cli_compact_and_refresh_use_the_index_s_own_model(tmp_path, tiny_model, town_crop):
    from tests.reliability.conftest import run_cli

    index = tmp_path / "idx"
    second = copy_raster(tmp_path, "second.tif", town_crop)
    for raster in (town_crop, second):  # two builds: two segments
        done = run_cli("index", "build", index, raster, "--model", tiny_model, "--tile-size", 96, "--stride", 96)
        assert done.returncode == 0, done.stderr
    assert len(json.loads((index / MANIFEST).read_text())["segments"]) == 2
    refresh = run_cli("index", "build", index)  # no --model: the index's own, not the bundled default
    assert refresh.returncode == 0 and "2 raster(s) unchanged" in refresh.stdout, refresh.stderr
    done = run_cli("index", "compact", index)
    assert done.returncode == 0, done.stderr
    assert len(json.loads((index / MANIFEST).read_text())["segments"]) == 1
    assert "1 segment(s)" in run_cli("index", "info", index).stdout


def test_reading_more_tiles_than_sqlite_takes_variables_in_one_statement(tmp_path):
    """iter_tiles reads 65536 tiles a batch; SQLite's default build takes 32766 variables a statement."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic_index import write_synthetic_index

    base = np.eye(128, dtype=np.float32)[:16]
    write_synthetic_index(tmp_path / "idx", 40_000, base)
    with IndexReader(tmp_path / "idx") as reader:
        for segment in reader.segments:
            segment.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32766)
        assert sum(len(tiles) for tiles, _ in reader.iter_tiles()) == 40_000
        assert len(reader.tiles(list(range(40_000)))) == 40_000


@pytest.mark.slow  # trains an IVF-PQ index (~90 s on 2 loaded cores)
def test_a_compressed_segment_is_ivfpq_reranked_from_float16(tmp_path, monkeypatch):
    """Above the compression threshold a segment holds PQ codes and a float16 copy for exact re-ranking."""
    from rsir_qgis_plugin.core.store import vectors

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic_index import synthetic_vectors, write_synthetic_index

    monkeypatch.setattr(vectors, "COMPRESS_THRESHOLD", 10_000)  # 2M in use: too large for a test
    base = np.random.default_rng(0).standard_normal((300, 128)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    manifest = write_synthetic_index(tmp_path / "idx", 20_000, base)
    segment, = manifest["segments"]
    assert segment["kind"] == "ivfpq" and (tmp_path / "idx" / segment["f16"]).stat().st_size == 20_000 * 128 * 2
    every = np.concatenate([synthetic_vectors(base, 10_000, number) for number in range(2)])
    queries = synthetic_vectors(base, 50, 99)
    truth = np.argsort(-(queries @ every.T), axis=1)[:, :10]
    with IndexReader(tmp_path / "idx") as reader:
        found = [reader.search(q, 10)[1] for q in queries]
        stored = reader.vectors([5, 19_999])
    recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
    assert recall > 0.85, recall
    assert np.abs(stored - every[[5, 19_999]]).max() < 2e-3  # the float16 copy


def test_a_bundled_model_by_name_builds_and_the_index_finds_it_again(tmp_path, town_crop):
    from tests.reliability.conftest import run_cli

    index = tmp_path / "idx"
    done = run_cli("index", "build", index, town_crop, "--model", "default-int8")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((index / MANIFEST).read_text())
    assert manifest["model"]["name"].endswith("-int8")
    manifest["model"]["path"] = "/moved/plugin/models/default-int8.onnx"  # the plugin was reinstalled elsewhere
    (index / MANIFEST).write_text(json.dumps(manifest))
    box = run_cli("search", index, "--raster", town_crop, "--bbox", "13467690", "1631960", "13467696", "1631966",
                  "-k", "3")
    assert box.returncode == 0, box.stderr
    assert len(json.loads(box.stdout)["features"]) == 3
