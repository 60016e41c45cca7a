"""Nothing indexed is lost to a bad setting, a raster that cannot be opened now, a lost manifest or a bad shard."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import BuildFailed, IndexStoreError
from rsir_qgis_plugin.core.params import TilingParams
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader, Shard, repair_index

from .conftest import one_line_error, params, run_cli, snapshot


def test_rebuild_with_bands_the_rasters_lack_changes_nothing_and_fails(built, tiny_model, two_rasters):
    before = snapshot(built)
    bad = TilingParams(tile_px=96, stride_px=96, bands=(9,))
    with pytest.raises(BuildFailed, match=r"band\(s\) \[9\] requested") as caught:
        build_index(params(built, two_rasters, tiny_model, tiling=bad))
    assert "nothing was changed" in str(caught.value)
    assert snapshot(built) == before  # the live generation and every shard untouched
    with IndexReader(built) as reader:
        assert reader.size == 32
    done = run_cli("index", "build", built, *two_rasters, "--model", tiny_model, "--tile-size", 96,
                   "--stride", 96, "--bands", "9")
    assert done.returncode == 1 and "[9] requested" in done.stderr
    assert snapshot(built) == before


def test_a_raster_that_fails_this_time_keeps_its_previous_tiles(built, tiny_model, two_rasters):
    bad = TilingParams(tile_px=96, stride_px=96, bands=(9,))
    summary = build_index(params(built, two_rasters[1:], tiny_model, tiling=bad))
    assert summary.tiles_total == 32 and summary.rasters_kept == 1
    (path, reason), = summary.failed
    assert path == str(two_rasters[1].resolve()) and "16 previously indexed tiles are kept" in reason
    done = run_cli("index", "build", built, two_rasters[1], "--model", tiny_model, "--tile-size", 96,
                   "--stride", 96, "--bands", "9")
    assert done.returncode == 3, done.stderr  # committed, but a raster failed
    with IndexReader(built) as reader:
        assert reader.size == 32


def test_refresh_keeps_a_raster_that_exists_but_cannot_be_opened(built, tiny_model, two_rasters):
    two_rasters[1].write_bytes(b"being rewritten by another program" * 64)
    summary = build_index(params(built, [], tiny_model))
    assert summary.rasters_removed == 0 and summary.rasters_kept == 1 and summary.tiles_total == 32
    assert [p for p, _ in summary.failed] == [str(two_rasters[1].resolve())]
    assert len(list((built / "shards").glob("*.npz"))) == 2


def test_refresh_with_the_gtiff_driver_unavailable_commits_nothing(built, tiny_model):
    before = snapshot(built)
    done = run_cli("index", "build", built, "--model", tiny_model, env={"GDAL_SKIP": "GTiff"})
    assert done.returncode == 1 and "nothing was changed" in done.stderr, done.stderr
    assert snapshot(built) == before


def test_refresh_keeps_rasters_an_unprivileged_user_cannot_read(shared_folder, tiny_model, town_crop):
    model = shutil.copy(tiny_model, shared_folder / "model.onnx")
    rasters = [shutil.copy(town_crop, shared_folder / name) for name in ("a.tif", "b.tif")]
    index = shared_folder / "idx"
    build_index(params(index, rasters, model))
    for path in [index, *index.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    (shared_folder / "b.tif").chmod(0)
    done = run_cli("index", "build", index, "--model", model, user=65534)
    assert done.returncode == 3, done.stderr
    assert "Permission denied" in done.stdout and "tiles are kept" in done.stdout
    with IndexReader(index) as reader:
        assert reader.size == 32


def test_only_a_raster_gone_from_disk_is_dropped(built, tiny_model, two_rasters):
    two_rasters[1].unlink()
    summary = build_index(params(built, [], tiny_model))
    assert (summary.rasters_removed, summary.tiles_total, summary.failed) == (1, 16, [])


def test_a_missing_manifest_is_refused_with_the_way_to_recover(built, tiny_model, two_rasters):
    (built / MANIFEST).unlink()
    before = snapshot(built)
    with pytest.raises(IndexStoreError, match="index repair"):
        build_index(params(built, [], tiny_model))
    line = one_line_error(run_cli("index", "build", built, "--model", tiny_model), "index repair", "--force")
    assert "manifest.json: missing" in line
    one_line_error(run_cli("search", built, "--raster", two_rasters[0], "--bbox", 0, 0, 1, 1), "index repair")
    assert snapshot(built) == before  # nothing overwritten, no shard deleted

    repaired = repair_index(built, tiny_model)
    assert (repaired.rasters, repaired.tiles, repaired.rejected) == (2, 32, [])
    refresh = build_index(params(built, [], tiny_model))
    assert refresh.rasters_unchanged == 2 and refresh.tiles_indexed == 0 and refresh.tiles_total == 32


def test_repair_from_the_cli_and_build_force(built, tiny_model, two_rasters):
    (built / MANIFEST).write_text("{ not json")
    done = run_cli("index", "repair", built, "--model", tiny_model)
    assert done.returncode == 0, done.stderr
    assert "32 tiles from 2 raster(s)" in done.stdout
    (built / MANIFEST).write_text("[]")
    forced = run_cli("index", "build", built, *two_rasters, "--model", tiny_model, "--tile-size", 96,
                     "--stride", 96, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "2 resumed" in forced.stdout  # --force starts afresh but reuses the shards that verify
    with IndexReader(built) as reader:
        assert reader.size == 32


def _rewrite_shard(path, **arrays):
    """Rewrite a shard's arrays in place, keeping its recorded checksum (what a bad disk or tool does)."""
    with np.load(path) as data:
        content = {name: data[name] for name in data.files}
    content.update(arrays)
    with open(path, "wb") as handle:
        np.savez(handle, **content)


def test_a_shard_whose_vectors_do_not_match_its_windows_is_recomputed(built, tiny_model):
    shard_file = sorted((built / "shards").glob("*.npz"))[0]
    with np.load(shard_file) as data:
        vectors = data["vectors"]
    _rewrite_shard(shard_file, vectors=vectors[:10])
    # Shards are read when the index is rewritten from them (compaction, repair, damage).
    summary = build_index(params(built, [], tiny_model, compact=True))
    assert summary.shards_recomputed == 1 and summary.rasters_indexed == 1 and summary.tiles_total == 32
    assert len(Shard.load(shard_file).vectors) == 16


def test_a_shard_whose_bytes_changed_fails_its_checksum_and_is_recomputed(built, tiny_model):
    shard_file = sorted((built / "shards").glob("*.npz"))[0]
    with np.load(shard_file) as data:
        vectors = data["vectors"].copy()
    vectors[3] = vectors[4]  # same shape, other values: only the checksum can tell
    _rewrite_shard(shard_file, vectors=vectors)
    summary = build_index(params(built, [], tiny_model, compact=True))
    assert summary.shards_recomputed == 1 and summary.tiles_total == 32


def test_a_build_in_which_every_raster_fails_never_commits_a_first_generation(tmp_path, tiny_model):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a raster" * 100)
    with pytest.raises(BuildFailed):
        build_index(params(tmp_path / "fresh", [garbage], tiny_model))
    assert not (tmp_path / "fresh" / MANIFEST).exists()


def test_manifest_records_checksums_and_counts(built):
    manifest = json.loads((built / MANIFEST).read_text())
    assert manifest["format_version"] == 3 and manifest["tile_count"] == 32
    segment, = manifest["segments"]
    assert segment["vectors_bytes"] == (built / segment["vectors"]).stat().st_size
    assert len(segment["vectors_sha256"]) == len(segment["catalog_sha256"]) == 64
