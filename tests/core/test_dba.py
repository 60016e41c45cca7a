"""Database-side augmentation (DBA) in the index (issue 22 item 1): each tile's search vector is the
weighted mean of its embedding and its 10 nearest neighbours that do not overlap it on the ground,
checked against a brute-force numpy computation over the real FAISS-built index; the model's embeddings
stay in the shards and vectors.faiss; the setting is in the manifest; a new segment is augmented against
the whole index, compaction augments everything; a cancelled DBA step leaves the previous index.

Real rasters (a crop of the town sample and a copy warped to UTM: the same ground in two rasters), the
bundled model (its embeddings spread, so the 10th and 11th neighbours are rarely tied), real FAISS.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import BuildCancelled
from rsir_qgis_plugin.core.expansion import ALPHA, NEIGHBOURS
from rsir_qgis_plugin.core.geometry import ground_overlaps, ground_quads
from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.search import search_box
from rsir_qgis_plugin.core.store import IndexReader, Shard, read_index_info, read_manifest
from tests.conftest import write_town_crop
from tests.core.test_feedback import pixel_box
from tests.core.test_search_overlap import reprojected_copy

TILING = TilingParams(tile_px=64, stride_px=32)  # half-tile stride: each tile overlaps up to 8 of its raster's
TIE = 1e-5  # 10th and 11th neighbours closer than this: either is right, the row is not compared


def params(index: Path, rasters, **kw) -> BuildParams:
    return BuildParams(index_dir=index, rasters=tuple(rasters), model_path=DEFAULT_MODEL_PATH, tiling=TILING, **kw)


@pytest.fixture(scope="module")
def ground(tmp_path_factory):
    """(folder, crop, utm copy, plain index of both): the embeddings are made once; other indexes here
    start from copies of its shards (a build reuses a finished shard: no raster is embedded twice)."""
    folder = tmp_path_factory.mktemp("dba")
    crop = write_town_crop(folder)
    utm = reprojected_copy(crop, folder / "utm.tif", "EPSG:32651", 0.13)
    build_index(params(folder / "plain", (crop, utm)))
    return folder, crop, utm, folder / "plain"


def with_shards_of(plain: Path, index: Path) -> Path:
    shutil.copytree(plain / "shards", index / "shards")
    return index


@pytest.fixture(scope="module")
def incremental(ground):
    """The crop indexed with DBA, then the UTM copy added by a second build (a second segment)."""
    folder, crop, utm, plain = ground
    index = with_shards_of(plain, folder / "incremental")
    build_index(params(index, (crop,), dba=True))
    first = read_manifest(index)
    summary = build_index(params(index, (utm,)))  # dba None: the index keeps its own setting
    return index, first, summary


def live_tiles(reader: IndexReader):
    """Every live tile: ids, raster ids, windows, ground quads, the model's and the search vectors."""
    ids = np.concatenate([segment.live_local_ids() + segment.base for segment in reader.segments])
    tiles = reader.tiles(ids.tolist())
    quads = np.concatenate([ground_quads(t.raster.crs_wkt, t.raster.transform, [t.window]) for t in tiles])
    return (ids, np.array([t.raster.id for t in tiles]), np.array([t.window for t in tiles]), quads,
            reader.vectors(ids), reader.vectors(ids, augmented=True))


def overlapping(i: int, j: int, rasters, windows, quads) -> bool:
    """Brute force, tile by tile: shared pixels on one raster, shared ground across rasters."""
    if rasters[i] == rasters[j]:
        a, b = windows[i], windows[j]
        return (min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0])) and (min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1]))
    return ground_overlaps(quads[i], quads[j])


def brute_force_dba(rows, among, vectors, rasters, windows, quads, exclude=True):
    """numpy DBA of `rows` with neighbours among `among` (positions): (augmented (n, D), tied rows)."""
    out, tied = np.zeros((len(rows), vectors.shape[1])), []
    for n, i in enumerate(rows):
        sims = vectors[among] @ vectors[i]
        order = np.argsort(-sims, kind="stable")
        chosen = []
        for j in (among[o] for o in order):
            if j != i and not (exclude and overlapping(i, j, rasters, windows, quads)):
                chosen.append(j)
                if len(chosen) > NEIGHBOURS:
                    break
        s = vectors[chosen] @ vectors[i]
        if len(s) > NEIGHBOURS and s[NEIGHBOURS - 1] - s[NEIGHBOURS] < TIE:
            tied.append(n)
        w = np.maximum(s[:NEIGHBOURS], 0) ** ALPHA
        v = vectors[i] + (w[:, None] * vectors[chosen[:NEIGHBOURS]]).sum(0)
        out[n] = v / np.linalg.norm(v)
    return out, tied


def assert_matches(stored, expected, tied):
    keep = np.setdiff1d(np.arange(len(stored)), tied)
    assert len(tied) <= len(stored) // 20, f"{len(tied)} rows with tied neighbours: the check says little"
    assert np.abs(stored[keep] - expected[keep]).max() < 2e-5


def test_a_new_segments_search_vectors_are_its_tiles_and_their_non_overlapping_neighbours_in_the_whole_index(
        incremental):
    index, _, summary = incremental
    with IndexReader(index) as reader:
        ids, rasters, windows, quads, model_vectors, search = live_tiles(reader)
        second = reader.segments[1]
        rows = np.flatnonzero(ids >= second.base)  # the UTM copy's tiles, added by the second build
        expected, tied = brute_force_dba(rows, np.arange(len(ids)), model_vectors, rasters, windows, quads)
        assert_matches(search[rows], expected, tied)
        # The check can fail: with the overlapping tiles (its own raster's and the same ground in the crop,
        # shifted copies of it) as neighbours, every search vector would be another.
        unexcluded, _ = brute_force_dba(rows, np.arange(len(ids)), model_vectors, rasters, windows, quads,
                                        exclude=False)
        assert np.median(np.abs(search[rows] - unexcluded).max(axis=1)) > 1e-2
        # Found among both segments: most of the UTM tiles' non-overlapping neighbours are in the crop.
        assert second.segment["dba"]["against"] == len(ids)
    assert summary.dba_seconds > 0 and "database-side augmentation" in summary.describe()


def test_an_earlier_segment_keeps_its_search_vectors_until_compaction_recomputes_every_one(ground, incremental):
    folder, crop, utm, plain = ground
    index, _, _ = incremental
    with IndexReader(index) as reader:
        ids, rasters, windows, quads, model_vectors, search = live_tiles(reader)
        rows = np.flatnonzero(ids < reader.segments[1].base)  # the crop's tiles, the first build's
        expected, tied = brute_force_dba(rows, rows, model_vectors, rasters, windows, quads)  # among the crop only
        assert_matches(search[rows], expected, tied)
    compacted = with_shards_of(plain, folder / "compacted")
    build_index(params(compacted, (crop,), dba=True))
    build_index(params(compacted, (utm,)))
    build_index(BuildParams(index_dir=compacted, rasters=(), compact=True))
    with IndexReader(compacted) as reader:
        assert len(reader.segments) == 1 and reader.augmented is not None
        ids, rasters, windows, quads, model_vectors, search = live_tiles(reader)
        everything = np.arange(len(ids))
        expected, tied = brute_force_dba(everything, everything, model_vectors, rasters, windows, quads)
        assert_matches(search, expected, tied)


def test_the_setting_is_in_the_manifest_and_the_models_embeddings_stay_in_shards_and_vectors(ground, incremental):
    _, _, _, plain = ground
    index, first, _ = incremental
    manifest = read_manifest(index)
    assert manifest["dba"] == first["dba"] == {"neighbours": NEIGHBOURS, "alpha": ALPHA}
    for segment in manifest["segments"]:
        assert segment["dba"]["neighbours"] == NEIGHBOURS and segment["dba"]["knn"] == "exact"
        assert (index / segment["search"]).is_file() and segment["search_sha256"] and segment["search_sample"]
    assert "dba" not in read_manifest(plain)  # off unless asked for: the plain index is as rsir wrote it before
    assert "database-side augmentation (top 10 neighbours, alpha 3)" in read_index_info(index).describe()
    assert "augmentation" not in read_index_info(plain).describe()
    with IndexReader(index) as reader, IndexReader(plain) as without:
        for raster in reader.rasters.values():
            shard = Shard.load(index / "shards" / f"{raster.shard}.npz")
            tile_ids = [reader.tile_at(raster, tuple(w)) for w in shard.windows.tolist()]
            assert np.allclose(reader.vectors(tile_ids), shard.vectors, atol=1e-6)
            assert not np.allclose(reader.vectors(tile_ids, augmented=True), shard.vectors, atol=1e-3)
            twin = next(r for r in without.rasters.values() if r.path == raster.path)
            plain_ids = [without.tile_at(twin, tuple(w)) for w in shard.windows.tolist()]
            assert np.allclose(without.vectors(plain_ids), shard.vectors, atol=1e-6)


def test_no_rerank_on_an_index_with_dba_is_exactly_the_ranking_without_it(ground, incremental):
    folder, crop, _, plain = ground
    index, _, _ = incremental
    box = pixel_box(crop, 150, 150, 64)
    old = search_box(plain, crop, box, None, SearchParams(k=15, rerank=False))
    new = search_box(index, crop, box, None, SearchParams(k=15, rerank=False))
    assert [(h.raster, h.window, h.score) for h in new.hits] == [(h.raster, h.window, h.score) for h in old.hits]
    reranked = search_box(index, crop, box, None, SearchParams(k=15))
    assert [(h.raster, h.window) for h in reranked.hits] != [(h.raster, h.window) for h in old.hits]


def test_dba_off_or_on_again_rewrites_the_index_and_an_older_manifest_still_opens_and_searches(ground):
    folder, crop, utm, plain = ground
    index = with_shards_of(plain, folder / "toggled")
    build_index(params(index, (crop, utm), dba=True))
    assert read_manifest(index)["dba"]
    summary = build_index(params(index, (), dba=False))
    manifest = read_manifest(index)
    assert summary.tiles_indexed == 0 and "dba" not in manifest
    assert not any(key.startswith("search") or key == "dba" for s in manifest["segments"] for key in s)
    assert not [s for s in manifest["segments"] if (index / s["catalog"]).with_name("search.faiss").exists()]
    # An index written by an rsir before DBA, whose manifest names no DBA: it opens and searches, and a
    # later rsir build that is told nothing leaves it without DBA.
    box = pixel_box(crop, 28, 280, 64)
    assert search_box(index, crop, box, None, SearchParams(k=5)).hits
    assert build_index(params(index, ())).tiles_indexed == 0 and "dba" not in read_manifest(index)


def test_a_segment_without_search_vectors_in_an_index_with_dba_makes_it_search_the_models_embeddings(ground):
    """As an rsir before DBA leaves an index with DBA after adding a segment: every segment then searches the
    model's embeddings (scores on one scale), and the next build rewrites it with DBA throughout."""
    folder, crop, utm, plain = ground
    index = with_shards_of(plain, folder / "mixed")
    build_index(params(index, (crop,), dba=True))
    build_index(params(index, (utm,), dba=True))
    manifest_path = index / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for key in [k for k in manifest["segments"][1] if k.startswith("search") or k == "dba"]:
        del manifest["segments"][1][key]
    manifest_path.write_text(json.dumps(manifest))
    with IndexReader(index) as reader:
        assert reader.augmented is None
        assert np.allclose(reader.vectors([0, 1], augmented=True), reader.vectors([0, 1]))
    assert build_index(params(index, ())).tiles_indexed == 0
    with IndexReader(index) as reader:
        assert reader.augmented is not None and len(reader.segments) == 1


def test_a_damaged_dba_record_or_search_file_is_refused_with_its_name(ground, incremental):
    from rsir_qgis_plugin.core.errors import IndexStoreError
    from rsir_qgis_plugin.core.store.manifest import validate

    index, _, _ = incremental
    manifest = read_manifest(index)
    bad = json.loads(json.dumps(manifest))
    bad["dba"] = {"neighbours": -3, "alpha": 3.0}
    with pytest.raises(IndexStoreError, match="dba.neighbours"):
        validate(bad, index / "manifest.json")
    bad = json.loads(json.dumps(manifest))
    bad["segments"][0]["search"] = "../../etc/passwd"
    with pytest.raises(IndexStoreError, match="not a segment file"):
        validate(bad, index / "manifest.json")
    copy = Path(shutil.copytree(index, index.parent / "damaged-search"))
    search = copy / manifest["segments"][0]["search"]
    data = bytearray(search.read_bytes())
    data[len(data) // 4] ^= 0xFF  # within the head that opening hashes (integrity.file_sample)
    search.write_bytes(bytes(data))
    with pytest.raises(IndexStoreError, match="search.faiss"):
        IndexReader(copy)


def test_a_cancelled_dba_step_leaves_the_previous_index_and_the_next_build_finishes_it(ground):
    folder, crop, utm, plain = ground
    index = with_shards_of(plain, folder / "cancelled")
    for shard in (index / "shards").glob("*.npz"):  # the UTM copy is embedded by the cancelled build
        if Shard.load(shard).record["path"] == str(utm.resolve()):
            shard.unlink()
    build_index(params(index, (crop,)))
    before = (index / "manifest.json").read_bytes()
    started = []

    def progress(percent, message):
        if "augmentation" in message:
            started.append(percent)

    with pytest.raises(BuildCancelled, match="previous index is unchanged"):
        build_index(params(index, (crop, utm), dba=True), progress, is_cancelled=lambda: bool(started))
    assert started and (index / "manifest.json").read_bytes() == before
    assert not [p.name for p in (index / "segments").iterdir() if p.name.endswith(".tmp")]
    with IndexReader(index) as reader:
        assert reader.augmented is None and reader.size == 121
    summary = build_index(params(index, (crop, utm), dba=True))
    assert summary.tiles_indexed == 0  # the cancelled build finished the UTM copy's shard before DBA
    with IndexReader(index) as reader:
        assert reader.augmented is not None and len(reader.rasters) == 2


def test_repair_keeps_dba_where_the_manifest_said_so(incremental):
    from rsir_qgis_plugin.core.store import repair_index

    index, _, _ = incremental
    copy = Path(shutil.copytree(index, index.parent / "repaired"))
    assert repair_index(copy, DEFAULT_MODEL_PATH).tiles == read_manifest(index)["tile_count"]
    with IndexReader(copy) as reader:
        assert reader.augmented == {"neighbours": NEIGHBOURS, "alpha": ALPHA} and len(reader.segments) == 1


@pytest.mark.slow  # trains IVF-PQ on 20,000 vectors (about 20 s on 2 cores)
def test_a_compressed_segment_gets_pq_search_vectors_and_a_float16_copy_from_approximate_neighbours(
        tmp_path, monkeypatch):
    """ivfpq segments (threshold lowered, as tests/core/test_segments.py does) hold search.faiss and search.f16;
    above EXACT_KNN_MAX (lowered too) the neighbours come from the segment's own IVF index, approximately."""
    import sys

    from rsir_qgis_plugin.core.store import dba, vectors

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from synthetic_index import synthetic_vectors, write_synthetic_index

    monkeypatch.setattr(vectors, "COMPRESS_THRESHOLD", 10_000)
    monkeypatch.setattr(dba, "EXACT_KNN_MAX", 5_000)
    base = np.random.default_rng(0).standard_normal((300, 128)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    manifest = write_synthetic_index(tmp_path / "idx", 20_000, base, dba=True)
    segment, = manifest["segments"]
    assert segment["kind"] == "ivfpq" and segment["dba"]["knn"].startswith("ivf nprobe")
    assert (tmp_path / "idx" / segment["search_f16"]).stat().st_size == 20_000 * 128 * 2
    every = np.concatenate([synthetic_vectors(base, 10_000, number) for number in range(2)])
    rows = np.arange(0, 20_000, 997)
    # The virtual rasters' tiles do not overlap (a grid of whole tiles): the neighbours are the 10 best others.
    sims = every[rows] @ every.T
    sims[np.arange(len(rows)), rows] = -np.inf
    top = np.argsort(-sims, axis=1)[:, :NEIGHBOURS]
    weights = np.maximum(np.take_along_axis(sims, top, 1), 0) ** ALPHA
    expected = every[rows] + np.einsum("rk,rkd->rd", weights, every[top])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    with IndexReader(tmp_path / "idx") as reader:
        assert reader.augmented is not None
        stored = reader.vectors(rows, augmented=True)
        assert np.abs(reader.vectors(rows) - every[rows]).max() < 2e-3  # the model's float16 copy, untouched
        close = np.abs(stored - expected).max(axis=1) < 5e-3  # float16, and a neighbour IVF may miss
        assert close.mean() >= 0.8, close.mean()
        scores, ids = reader.search(expected[0], 5, augmented=True)
        assert ids[0] == rows[0] and scores[0] == pytest.approx(1.0, abs=2e-3)
