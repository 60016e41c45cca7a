"""The index directory on real files: build, incremental updates, locking, model identity, kill and resume."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import BuildCancelled, IndexLockedError, IndexStoreError, ModelMismatchError
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader, WriterLock, read_index_info
from tests.conftest import TOWN_RASTER, town_pixels, write_raster

ROOT = Path(__file__).resolve().parents[2]
TILING = TilingParams(tile_px=96, stride_px=96)


def params(index_dir, rasters, model, **changes):
    return BuildParams(index_dir=index_dir, rasters=tuple(rasters), model_path=model, tiling=TILING,
                       batch_size=16, **changes)


def copy_raster(tmp_path, name, source=TOWN_RASTER):
    return Path(shutil.copy(source, tmp_path / name))


def test_build_writes_catalog_vectors_and_manifest(tmp_path, tiny_model, town_crop):
    summary = build_index(params(tmp_path / "idx", [town_crop], tiny_model))
    # 384 px with 96 px tiles and stride: 16 windows, all real imagery.
    assert (summary.tiles_indexed, summary.tiles_total, summary.rasters_indexed) == (16, 16, 1)
    assert summary.index_kind == "flat" and summary.failed == []
    info = read_index_info(tmp_path / "idx")
    assert info.tile_count == 16 and info.rasters == ((str(town_crop.resolve()), 16),)
    assert info.model["name"] == "resnet18-untrained-test"
    with IndexReader(tmp_path / "idx") as reader:
        assert reader.size == 16
        tiles = reader.tiles(list(range(16)))
        assert {t.window for t in tiles} == {(c, r, 96, 96) for c in range(0, 384, 96) for r in range(0, 384, 96)}
        lon_min, lat_min, lon_max, lat_max = tiles[0].bounds_4326
        assert 120.0 < lon_min < lon_max < 122.0 and 14.0 < lat_min < lat_max < 15.0  # the sample's place


def test_tta_index_is_the_same_for_a_raster_turned_by_90_degrees(tmp_path, tiny_model):
    # 384 px square, 96 px tiles: turning the raster maps the tile grid onto itself, tile by tile.
    pixels = town_pixels()[0][:, 256:640, 512:896]
    upright = write_raster(tmp_path / "upright.tif", pixels.copy())
    turned = write_raster(tmp_path / "turned.tif", np.rot90(pixels, 1, axes=(1, 2)).copy())

    def best_match_cosines(index, tta):
        """For every tile of the upright raster, its cosine with the closest tile of the turned one."""
        summary = build_index(params(tmp_path / index, [upright, turned], tiny_model, tta=tta))
        assert ("4-rotation TTA" in summary.provider) == tta
        with IndexReader(tmp_path / index) as reader:
            tiles = reader.tiles(list(range(reader.size)))
            vecs = reader.vectors(range(reader.size))
        names = np.array([Path(t.raster.path).name for t in tiles])
        return (vecs[names == "upright.tif"] @ vecs[names == "turned.tif"].T).max(axis=1)

    assert best_match_cosines("tta", tta=True).min() > 1 - 1e-5
    assert best_match_cosines("plain", tta=False).min() < 1 - 1e-3


def test_incremental_add_change_delete_and_unchanged(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    second = copy_raster(tmp_path, "second.tif", town_crop)
    build_index(params(index, [town_crop], tiny_model))

    added = build_index(params(index, [second], tiny_model))
    assert (added.rasters_indexed, added.rasters_unchanged, added.tiles_total) == (1, 1, 32)

    again = build_index(params(index, [], tiny_model))
    assert (again.rasters_indexed, again.rasters_unchanged, again.tiles_indexed) == (0, 2, 0)

    os.utime(second, ns=(1, 1))  # a changed file (mtime) is embedded again
    changed = build_index(params(index, [], tiny_model))
    assert (changed.rasters_indexed, changed.rasters_unchanged) == (1, 1)

    second.unlink()
    dropped = build_index(params(index, [], tiny_model))
    assert (dropped.rasters_removed, dropped.tiles_total) == (1, 16)
    assert len(list((index / "shards").iterdir())) == 1  # the deleted raster's shard is gone too
    # A build adds a segment and tombstones what it replaced; the folder holds the live segments
    # and those of the state before (kept for readers that opened it just before the commit).
    live = json.loads((index / MANIFEST).read_text())
    assert live["tile_count"] == 16 and len(live["segments"]) >= 1
    on_disk = {p.name for p in (index / "segments").iterdir()}
    assert {s["name"] for s in live["segments"]} <= on_disk


def test_builds_add_segments_and_tombstones_and_compaction_merges_them(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    second, third = (copy_raster(tmp_path, name, town_crop) for name in ("second.tif", "third.tif"))
    build_index(params(index, [town_crop, second], tiny_model))
    first = json.loads((index / MANIFEST).read_text())["segments"]
    build_index(params(index, [third], tiny_model))
    manifest = json.loads((index / MANIFEST).read_text())
    assert manifest["segments"][0] == first[0]  # a build never rewrites a segment
    assert [s["tiles"] for s in manifest["segments"]] == [32, 16]
    os.utime(second, ns=(1, 1))  # changed: re-embedded into a new segment, its old tiles tombstoned
    changed = build_index(params(index, [], tiny_model))
    manifest = json.loads((index / MANIFEST).read_text())
    assert changed.tiles_total == 48 and changed.rasters_indexed == 1 and changed.rasters_unchanged == 2
    assert [(s["tiles"], s["dead_tiles"]) for s in manifest["segments"]] == [(32, 16), (16, 0), (16, 0)]
    third.unlink()  # removed: its segment is wholly dead and leaves the manifest
    build_index(params(index, [], tiny_model))
    manifest = json.loads((index / MANIFEST).read_text())
    assert [(s["tiles"], s["dead_tiles"]) for s in manifest["segments"]] == [(32, 16), (16, 0)]
    with IndexReader(index) as reader:
        assert reader.size == 32 and len(reader.rasters) == 2
        scores, ids = reader.search(reader.vectors([0])[0], 40)
        assert len(ids) == 32 and len(set(ids.tolist())) == 32 and np.all(np.diff(scores) <= 1e-6)
        assert {t.raster.path for t in reader.tiles(ids.tolist())} == {str(town_crop), str(second)}
        for k in (1, 3, 8):  # small k: the replaced copies of second.tif's tiles rank first and are skipped
            top_scores, top_ids = reader.search(reader.vectors([ids[0]])[0], k)
            assert top_ids.tolist() == ids[:k].tolist() and np.allclose(top_scores, scores[:k])
    compacted = build_index(params(index, [], tiny_model, compact=True))
    manifest = json.loads((index / MANIFEST).read_text())
    assert compacted.tiles_total == 32 and compacted.tiles_indexed == 0
    assert [(s["tiles"], s["dead_tiles"]) for s in manifest["segments"]] == [(32, 0)]
    with IndexReader(index) as reader:
        ids = reader.search(np.ones(512, np.float32) / np.sqrt(512), 40)[1].tolist()
        assert sorted(t.raster.path for t in reader.tiles(ids)) == sorted([str(town_crop)] * 16 + [str(second)] * 16)
        with pytest.raises(IndexStoreError, match="not in the index"):
            reader.vectors([0])  # ids of the segments compaction replaced


def test_changed_tiling_reembeds_the_raster(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], tiny_model))
    finer = BuildParams(index_dir=index, rasters=(town_crop,), model_path=tiny_model,
                        tiling=TilingParams(tile_px=96, stride_px=48))
    summary = build_index(finer)
    assert summary.rasters_indexed == 1 and summary.tiles_total == 49


def test_corrupt_raster_is_reported_by_name_and_the_rest_indexed(tmp_path, tiny_model, town_crop):
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(TOWN_RASTER.read_bytes()[:60_000])  # header fine, pixel data cut off
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all" * 100)
    summary = build_index(params(tmp_path / "idx", [garbage, truncated, town_crop], tiny_model))
    failed = dict(summary.failed)
    assert set(failed) == {str(garbage), str(truncated)}
    assert "not a readable raster" in failed[str(garbage)]
    assert summary.rasters_indexed == 1 and summary.tiles_total == 16
    assert "truncated.tif" in summary.describe()


def test_a_different_model_is_refused(tmp_path, tiny_model, other_model, town_crop):
    build_index(params(tmp_path / "idx", [town_crop], tiny_model))
    with pytest.raises(ModelMismatchError, match="built with model 'resnet18-untrained-test'"):
        build_index(params(tmp_path / "idx", [town_crop], other_model))


def test_a_second_writer_is_refused(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    index.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from rsir_qgis_plugin.core.store import WriterLock\n"
        f"with WriterLock({str(index)!r}):\n    print('locked', flush=True); time.sleep(60)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            build_index(params(index, [town_crop], tiny_model))
    finally:
        holder.kill()
        holder.wait()
    with WriterLock(index):  # released by the OS when its holder died
        pass


def test_cancel_leaves_the_previous_index_and_keeps_finished_rasters(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], tiny_model))
    before = (index / MANIFEST).read_bytes()
    rasters = [copy_raster(tmp_path, f"r{i}.tif", town_crop) for i in range(3)]
    calls = []

    def cancel_after_first_raster():
        calls.append(1)
        return len(list((index / "shards").iterdir())) >= 2

    with pytest.raises(BuildCancelled, match="previous index is unchanged"):
        build_index(params(index, rasters, tiny_model), is_cancelled=cancel_after_first_raster)
    assert (index / MANIFEST).read_bytes() == before
    with IndexReader(index) as reader:
        assert reader.size == 16
    resumed = build_index(params(index, rasters, tiny_model))
    assert resumed.rasters_resumed == 1 and resumed.rasters_indexed == 2 and resumed.tiles_total == 64


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
index, model, *rasters = sys.argv[1:]
shards = Path(index) / "shards"
def progress(percent, message):
    # Die the hard way once the first new raster's shard is on disk, mid-way through the build.
    if len(list(shards.glob("*.npz"))) >= 2:
        os.kill(os.getpid(), signal.SIGKILL)
build_index(BuildParams(index_dir=index, rasters=tuple(rasters), model_path=model,
                        tiling=TilingParams(tile_px=96, stride_px=96), batch_size=4), progress)
"""


def test_sigkill_during_build_leaves_previous_index_usable_and_next_build_resumes(tmp_path, tiny_model,
                                                                                   town_crop):
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], tiny_model))
    before = json.loads((index / MANIFEST).read_text())
    rasters = [str(copy_raster(tmp_path, f"k{i}.tif", town_crop)) for i in range(3)]
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(index), str(tiny_model), *rasters],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((index / MANIFEST).read_text()) == before
    with IndexReader(index) as reader:  # the previous generation is intact and searchable
        scores, ids = reader.search(np.ones(512, np.float32) / np.sqrt(512), 5)
        assert len(ids) == 5
    resumed = build_index(params(index, [Path(r) for r in rasters], tiny_model))
    assert resumed.rasters_resumed >= 1 and resumed.rasters_unchanged == 1
    assert resumed.tiles_total == 64 and resumed.failed == []


def test_approximate_index_is_ivf_and_finds_the_same_nearest_tile(tmp_path, tiny_model, town_crop):
    exact = build_index(params(tmp_path / "exact", [town_crop], tiny_model))
    approx = build_index(params(tmp_path / "approx", [town_crop], tiny_model, approximate=True))
    assert (exact.index_kind, approx.index_kind) == ("flat", "ivf")
    with IndexReader(tmp_path / "exact") as a, IndexReader(tmp_path / "approx") as b:
        query = np.random.default_rng(0).standard_normal(512).astype(np.float32)
        query /= np.linalg.norm(query)
        assert a.search(query, 1)[1][0] == b.search(query, 1)[1][0]


PARTIAL_KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from rsir_qgis_plugin.core import builder, jobs
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.core.store import Shard
jobs.CHECKPOINT_TILES = 8
index, model, raster = sys.argv[1:]
shards = Path(index) / "shards"
def progress(percent, message):
    # Die once the raster's second checkpoint is on disk, half-way through the raster.
    partial = list(shards.glob("*.partial.npz"))
    if partial and Shard.load(partial[0]).record["next_window"] >= 16:
        os.kill(os.getpid(), signal.SIGKILL)
builder.build_index(BuildParams(index_dir=index, rasters=(raster,), model_path=model,
                                tiling=TilingParams(tile_px=96, stride_px=48), batch_size=4), progress)
"""


def test_sigkill_inside_a_large_raster_resumes_from_its_checkpoint(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    killed = subprocess.run([sys.executable, "-c", PARTIAL_KILL_SCRIPT, str(index), str(tiny_model),
                             str(town_crop)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (index / MANIFEST).exists()  # nothing was committed
    finer = BuildParams(index_dir=index, rasters=(town_crop,), model_path=tiny_model,
                        tiling=TilingParams(tile_px=96, stride_px=48), batch_size=4)
    resumed = build_index(finer)
    # 49 windows in all; at least 16 were embedded before the kill and are not embedded again.
    assert resumed.tiles_total == 49 and resumed.tiles_indexed <= 49 - 16
    assert not list((index / "shards").glob("*.partial.npz"))
    fresh = build_index(BuildParams(index_dir=tmp_path / "fresh", rasters=(town_crop,), model_path=tiny_model,
                                    tiling=TilingParams(tile_px=96, stride_px=48)))
    assert fresh.tiles_total == 49
    with IndexReader(index) as a, IndexReader(tmp_path / "fresh") as b:
        assert [t.window for t in a.tiles(list(range(49)))] == [t.window for t in b.tiles(list(range(49)))]
        assert np.allclose(a.vectors(range(49)), b.vectors(range(49)), atol=1e-5)
