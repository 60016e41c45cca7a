"""Tiered merging on real indexes: live tiles kept, tombstoned ones dropped, the same search results, a kill at
each commit step survived, IVF-PQ codes reused; the policy keeps O(log N) segments."""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader
from rsir_qgis_plugin.core.store.merge_policy import MERGE_FACTOR, TIER_FLOOR, next_merge, tier_of
from tests.core.test_index import ROOT, copy_raster, params


def results(index, queries: np.ndarray, k: int) -> list[list[tuple]]:
    """Each query's hits as (raster path, window, score): tile ids change when segments merge, tiles do not."""
    with IndexReader(index) as reader:
        found = []
        for query in queries:
            scores, ids = reader.search(query, k)
            tiles = reader.tiles(ids.tolist())
            found.append([(t.raster.path, t.window, float(s)) for s, t in zip(scores, tiles)])
        return found


def assert_same_results(before, after, tolerance=1e-5):
    for old, new in zip(before, after):
        assert sorted((p, w) for p, w, _ in old) == sorted((p, w) for p, w, _ in new)
        assert np.allclose(sorted(s for *_, s in old), sorted(s for *_, s in new), atol=tolerance)


def segments_of(index) -> list[dict]:
    return json.loads((index / MANIFEST).read_text())["segments"]


def four_segments(tmp_path, tiny_model, town_crop):
    """An index of 4 flat segments (tier 0), one of them with a tombstoned raster, built with --no-merge."""
    index = tmp_path / "idx"
    second, third, fourth = (copy_raster(tmp_path, f"{name}.tif", town_crop) for name in ("b", "c", "d"))
    build_index(params(index, [town_crop, second], tiny_model))
    build_index(params(index, [third], tiny_model))
    os.utime(second, ns=(1, 1))  # changed: re-embedded into a new segment, its old tiles tombstoned
    build_index(params(index, [], tiny_model, merge=False))
    build_index(params(index, [fourth], tiny_model, merge=False))
    return index, fourth


def test_a_build_merges_four_segments_of_a_tier_keeping_live_tiles_and_the_same_results(
        tmp_path, tiny_model, town_crop):
    index, _ = four_segments(tmp_path, tiny_model, town_crop)
    assert [(s["tiles"], s["dead_tiles"]) for s in segments_of(index)] == [(32, 16), (16, 0), (16, 0), (16, 0)]
    with IndexReader(index) as reader:
        queries = reader.vectors(reader.segments[0].live_local_ids()[:4] + reader.segments[0].base)
    before = results(index, queries, 64)
    summary = build_index(params(index, [], tiny_model))  # a refresh: nothing to embed, the merge runs
    merged, = segments_of(index)
    assert (merged["tiles"], merged["dead_tiles"], merged["rasters"], merged["kind"]) == (64, 0, 4, "flat")
    assert "merged s" in summary.merged and summary.segments == 1 and summary.tiles_total == 64
    assert_same_results(before, results(index, queries, 64))
    with IndexReader(index) as reader:  # every live tile once, the tombstoned copies gone
        assert reader.size == 64 and len({(t.raster.path, t.window) for t in reader.tiles(list(
            range(merged["base"], merged["base"] + 64)))}) == 64


def test_the_policy_merges_a_full_tier_and_keeps_log_n_segments():
    assert (tier_of(0), tier_of(TIER_FLOOR * 4 - 1), tier_of(TIER_FLOOR * 4), tier_of(TIER_FLOOR * 16)) == (0, 0, 1, 2)

    def segment(name, tiles, dead=0):
        return {"name": name, "tiles": tiles, "dead_tiles": dead, "kind": "flat"}

    manifest = {"segments": [segment("a", 10**6), *(segment(f"n{i}", 10_000) for i in range(MERGE_FACTOR - 1))]}
    assert next_merge(manifest, lambda s: True) == []  # 3 in tier 0: not yet
    manifest["segments"].append(segment("new", 9_000, dead=100))
    assert next_merge(manifest, lambda s: True) == ["new", "n0", "n1", "n2"]
    assert next_merge(manifest, lambda s: s["name"] != "n1") == []  # one that cannot be merged: not enough
    # 1000 nightly builds of 10,000 tiles, each followed by the merges the policy asks for.
    segments, count = [segment("s0", 10**6)], 0
    for night in range(1000):
        segments.append(segment(f"d{night}", 10_000))
        while group := next_merge({"segments": segments}, lambda s: True):
            gone = [s for s in segments if s["name"] in group]
            segments = [s for s in segments if s["name"] not in group]
            segments.append(segment(f"m{count}", sum(s["tiles"] for s in gone)))
            count += 1
        tiers = {tier_of(s["tiles"]) for s in segments}
        assert len(segments) <= (MERGE_FACTOR - 1) * len(tiers)
    assert sum(s["tiles"] for s in segments) == 10**6 + 10**7 and len(segments) <= 12


# The build (its own commit first) then the merge, killed at the merge's n-th step: `write_catalog` is the merged
# segment half written (its folder a temporary), `write_manifest` the segment renamed in but not committed,
# `remove_stale_files` the merge committed but the merged segments' folders still there.
KILL_IN_MERGE_SCRIPT = """
import os, signal, sys
from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.core.store import generation, segments
index, model, raster, step = sys.argv[1:]
module = segments if step == "write_catalog" else generation
original, calls = getattr(module, step), []
def die_at_second_call(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the first is the build's own commit
        if step == "write_catalog":
            original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(module, step, die_at_second_call)
build_index(BuildParams(index_dir=index, rasters=(raster,), model_path=model,
                        tiling=TilingParams(tile_px=96, stride_px=96), batch_size=16))
"""


@pytest.mark.slow  # three killed builds in subprocesses (~20 s)
def test_a_kill_at_each_step_of_a_merge_leaves_every_live_tile_searchable_and_the_next_build_finishes(
        tmp_path, tiny_model, town_crop):
    ready = tmp_path / "ready"
    ready.mkdir()
    index, fourth = four_segments(ready, tiny_model, town_crop)
    fifth = copy_raster(ready, "e.tif", town_crop)
    for step, segments_after in (("write_catalog", 5), ("write_manifest", 5), ("remove_stale_files", 1)):
        killed_index = tmp_path / step
        shutil.copytree(index, killed_index)
        killed = subprocess.run([sys.executable, "-c", KILL_IN_MERGE_SCRIPT, str(killed_index), str(tiny_model),
                                 str(fifth), step], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert len(segments_of(killed_index)) == segments_after, step
        folders = {p.name for p in (killed_index / "segments").iterdir()}
        uncommitted = folders - {s["name"] for s in segments_of(killed_index)}
        assert {"write_catalog": any(n.startswith(".") for n in folders),  # killed where the step says
                "write_manifest": bool(uncommitted), "remove_stale_files": len(uncommitted) == 5}[step], folders
        with IndexReader(killed_index) as reader:  # every live tile found, once
            scores, ids = reader.search(reader.vectors([reader.segments[-1].base])[0], 200)
            tiles = reader.tiles(ids.tolist())
            assert reader.size == 80 and len({(t.raster.path, t.window) for t in tiles}) == 80, step
        resumed = build_index(params(killed_index, [], tiny_model))
        merged, = segments_of(killed_index)
        assert resumed.tiles_indexed == 0 and (merged["tiles"], merged["dead_tiles"]) == (80, 0), step
        # no temporary left
        assert not [p for p in (killed_index / "segments").iterdir() if p.name.startswith(".")], step


def pq_codes(index_dir, segment: dict) -> dict[int, bytes]:
    """local id -> PQ code bytes of an ivfpq segment, read from its inverted lists."""
    from rsir_qgis_plugin.core.store import faiss_module

    faiss = faiss_module()
    index = faiss.read_index(str(index_dir / segment["vectors"]))
    lists, found = index.invlists, {}
    for number in range(lists.nlist):
        n = lists.list_size(number)
        if n:
            ids = faiss.rev_swig_ptr(lists.get_ids(number), n).copy()
            codes = faiss.rev_swig_ptr(lists.get_codes(number), n * lists.code_size).copy().reshape(n, -1)
            found.update({int(i): c.tobytes() for i, c in zip(ids, codes)})
    return found


@pytest.mark.slow  # trains a small IVF-PQ codebook and writes 5 segments of synthetic tiles (~15 s)
def test_ivfpq_segments_merge_by_their_codes_with_the_shared_codebook(tmp_path, monkeypatch):
    from rsir_qgis_plugin.core.model import read_model
    from rsir_qgis_plugin.core.store import commit_changes, live_rasters, vectors, write_generation
    from rsir_qgis_plugin.core.store.codebook import CODEBOOK
    from rsir_qgis_plugin.core.store.merge import merge_tiers

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic_index import raster_shard, synthetic_vectors

    monkeypatch.setattr(vectors, "COMPRESS_THRESHOLD", 1_000)  # 2M in use: too large for a test
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, 128)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    index, model = tmp_path / "idx", read_model(None)
    index.mkdir()

    def shards(*numbers):
        return {f"virtual{n:06d}": raster_shard(n, synthetic_vectors(base, 1_500, n)) for n in numbers}

    manifest = write_generation(index, shards(0), model, None, None)
    for numbers in ((1, 2), (3,), (4,)):
        manifest = commit_changes(index, manifest, model, shards(*numbers), [], set(), None)
    retired = live_rasters(index, manifest)["/archive/virtual-00001.tif"]  # tombstoned in a 2-raster segment
    manifest = commit_changes(index, manifest, model, shards(5), [retired], set(), None)
    segments = manifest["segments"]
    assert [s["kind"] for s in segments] == ["ivfpq"] * 5 and len({s["codebook"] for s in segments}) == 1
    assert segments[0]["codebook"] != "" and (index / CODEBOOK).is_file()
    # A segment of an rsir before the shared codebook is left out, and the report says so.
    legacy = {**manifest, "segments": [{k: v for k, v in s.items() if k != "codebook"} for s in segments[:2]]
              + segments[2:]}
    committed = (index / MANIFEST).read_bytes()
    assert "2 ivfpq segment(s) encoded without" in merge_tiers(index, legacy, model)[1].describe()
    assert (index / MANIFEST).read_bytes() == committed  # 3 segments left to merge: not a full tier

    queries = synthetic_vectors(base, 40, 99)
    before = results(index, queries, 10)
    codes_before = {}
    with IndexReader(index) as reader:
        for segment, opened in zip(segments, reader.segments):
            codes, live = pq_codes(index, segment), opened.live_local_ids()
            tiles = reader.tiles((live + segment["base"]).tolist())
            codes_before.update({(t.raster.path, t.window): codes[i] for t, i in zip(tiles, live.tolist())})
    merged_manifest, report = merge_tiers(index, manifest, model)
    merged, = merged_manifest["segments"]
    assert "merged" in report.describe() and (merged["kind"], merged["codebook"]) == ("ivfpq", segments[0]["codebook"])
    assert merged["tiles"] == 5 * 1_500 and merged["dead_tiles"] == 0 and len(codes_before) == 5 * 1_500
    with IndexReader(index) as reader:  # each live tile has the code it had: nothing was encoded again
        codes = pq_codes(index, merged)
        tiles = reader.tiles(list(range(merged["base"], merged["base"] + merged["tiles"])))
        assert all(codes_before[(t.raster.path, t.window)] == codes[n] for n, t in enumerate(tiles))
        assert "/archive/virtual-00001.tif" not in {t.raster.path for t in tiles}
    after = results(index, queries, 10)
    # The same codes and float16 copies: the same hits and scores (one PQ candidate pool instead of five can
    # reorder a near tie at the edge of the re-ranked candidates, hence the 98 %).
    same = np.mean([{(p, w) for p, w, _ in a} == {(p, w) for p, w, _ in b} for a, b in zip(before, after)])
    assert same >= 0.95, same
    assert all(np.allclose([s for *_, s in a], [s for *_, s in b], atol=1e-6)
               for a, b in zip(before, after) if [x[:2] for x in a] == [x[:2] for x in b])


def test_in_an_index_searched_approximately_a_merge_of_tier_1_is_ivf(tmp_path, monkeypatch):
    """Nightly flat segments merged into a flat segment were scanned whole by every query; in an index that
    is approximate anyway the merge writes IVF (thresholds scaled down: 2,000 tiles for 250,000, 1,000 for
    40,000), unless the build asks for --exact."""
    from rsir_qgis_plugin.core.model import read_model
    from rsir_qgis_plugin.core.store import commit_changes, merge, merge_policy, vectors, write_generation
    from rsir_qgis_plugin.core.store.merge import merge_tiers

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synthetic_index import raster_shard, synthetic_vectors

    for module in (vectors, merge):
        monkeypatch.setattr(module, "APPROXIMATE_THRESHOLD", 2_000)
    monkeypatch.setattr(merge, "MERGED_IVF_MIN", 1_000)
    monkeypatch.setattr(merge_policy, "TIER_FLOOR", 100)  # nightly segments in tier 0, the base in tier 2
    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 128)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    index, model = tmp_path / "idx", read_model(None)
    index.mkdir()

    def shards(count, *numbers):
        return {f"virtual{n:06d}": raster_shard(n, synthetic_vectors(base, count, n)) for n in numbers}

    manifest = write_generation(index, shards(1_500, 0, 1), model, None, None)
    for night in range(2, 6):
        manifest = commit_changes(index, manifest, model, shards(300, night), [], set(), None)
    assert [s["kind"] for s in manifest["segments"]] == ["ivf"] + ["flat"] * 4
    exact = tmp_path / "exact"
    shutil.copytree(index, exact)
    queries = synthetic_vectors(base, 20, 99)
    before = results(index, queries, 10)
    merged_manifest, report = merge_tiers(index, manifest, model)
    assert [(s["kind"], s["tiles"]) for s in merged_manifest["segments"]] == [("ivf", 3_000), ("ivf", 1_200)]
    assert_same_results(before, results(index, queries, 10))  # 30 lists, all probed: the same hits
    kept, _ = merge_tiers(exact, json.loads((exact / MANIFEST).read_text()), model, approximate=False)
    assert [s["kind"] for s in kept["segments"]] == ["ivf", "flat"]


@pytest.mark.slow  # three commands in subprocesses (~11 s)
def test_cli_info_shows_the_tiers_and_build_merges_unless_no_merge(tmp_path, tiny_model, town_crop):
    from tests.reliability.conftest import run_cli

    index, _ = four_segments(tmp_path, tiny_model, town_crop)
    info = run_cli("index", "info", index)
    assert info.returncode == 0 and "tier 0 (0-40,000 tiles): 4" in info.stdout, info.stderr
    kept = run_cli("index", "build", index, "--no-merge")
    assert kept.returncode == 0 and "merged" not in kept.stdout and len(segments_of(index)) == 4, kept.stderr
    merged = run_cli("index", "build", index)
    assert merged.returncode == 0 and len(segments_of(index)) == 1, merged.stderr
    assert "merged s000001+s000002+s000003+s000004 -> s000005 (64 tiles, flat)" in merged.stdout
