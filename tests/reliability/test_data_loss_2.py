"""Nothing indexed is lost to an unmounted share, to --force, to a damaged catalog or to a first build
killed before its first commit (issue 20 items 1, 2, 3, 3b)."""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import IndexStoreError
from rsir_qgis_plugin.core.model import read_model
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader, read_manifest, repair_index

from .conftest import one_line_error, params, run_cli
from .mounts import tmpfs, unmount


def shard_files(index: Path) -> list[str]:
    return sorted(p.name for p in (index / "shards").iterdir())


def indexed_paths(index: Path) -> list[str]:
    with IndexReader(index) as reader:
        return sorted({tile.raster.path for tiles, _ in reader.iter_tiles() for tile in tiles})


def catalog_of(index: Path) -> Path:
    segment, = json.loads((index / MANIFEST).read_text())["segments"]
    return index / segment["catalog"]


# Item 1: a raster whose folder is missing keeps its tiles and its shard.

def test_a_raster_whose_folder_vanished_keeps_its_tiles_and_shard_through_refresh_and_compact(
        tmp_path, tiny_model, town_crop):
    share = tmp_path / "share"
    (share / "site").mkdir(parents=True)
    far = shutil.copy2(town_crop, share / "site" / "far.tif")
    index = tmp_path / "idx"
    build_index(params(index, [town_crop, far], tiny_model))
    shards = shard_files(index)
    share.rename(tmp_path / "share-away")  # the share is not there now: its folder is gone

    refresh = build_index(params(index, [], tiny_model))
    assert (refresh.rasters_removed, refresh.rasters_kept, refresh.tiles_total) == (0, 1, 32)
    assert [path for path, _ in refresh.failed] == [str(Path(far).resolve())]
    compact = build_index(params(index, [], tiny_model, compact=True))
    assert (compact.rasters_removed, compact.tiles_total) == (0, 32)
    assert shard_files(index) == shards  # no shard deleted

    (tmp_path / "share-away").rename(share)  # back again: nothing to embed
    back = build_index(params(index, [], tiny_model))
    assert (back.rasters_unchanged, back.tiles_indexed, back.tiles_total, back.failed) == (2, 0, 32, [])


def test_rasters_on_an_unmounted_tmpfs_keep_their_tiles_and_come_back_when_it_is_mounted(
        tmp_path, tiny_model, town_crop):
    mount_point, index = tmp_path / "mnt", tmp_path / "idx"
    with tmpfs(mount_point, "8m"):
        (mount_point / "site").mkdir()
        far = shutil.copy2(town_crop, mount_point / "site" / "far.tif")
        build_index(params(index, [town_crop, far], tiny_model))
        shards = shard_files(index)
        unmount(mount_point)
        done = run_cli("index", "build", index, "--model", tiny_model)
        assert done.returncode == 3, done.stderr  # committed; the share's raster listed as failed
        assert "16 previously indexed tiles are kept" in done.stdout
        compact = run_cli("index", "compact", index, "--model", tiny_model)
        assert compact.returncode == 3, compact.stderr
        with IndexReader(index) as reader:
            assert reader.size == 32
        assert shard_files(index) == shards
    with tmpfs(mount_point, "8m"):  # mounted again (a tmpfs comes back empty: the file is put back)
        (mount_point / "site").mkdir()
        shutil.copy2(town_crop, mount_point / "site" / "far.tif")  # same size and mtime: the same file
        back = build_index(params(index, [], tiny_model))
        assert (back.rasters_unchanged, back.tiles_indexed, back.tiles_total) == (2, 0, 32)


def test_a_raster_deleted_from_a_folder_that_is_still_there_is_dropped_with_its_shard(
        built, tiny_model, two_rasters):
    two_rasters[1].unlink()
    summary = build_index(params(built, [], tiny_model, compact=True))
    assert (summary.rasters_removed, summary.tiles_total) == (1, 16)
    assert len(shard_files(built)) == 1


# Item 2: --force never deletes a shard it did not replace.

def test_force_with_one_raster_after_a_lost_manifest_deletes_no_other_shard(built, tiny_model, two_rasters):
    shards = shard_files(built)
    (built / MANIFEST).unlink()
    forced = run_cli("index", "build", built, two_rasters[0], "--model", tiny_model, "--tile-size", 96,
                     "--stride", 96, "--force")
    assert forced.returncode == 0, forced.stderr
    assert shard_files(built) == shards
    refresh = build_index(params(built, [], tiny_model))  # later commits leave it alone too
    assert refresh.tiles_total == 16 and shard_files(built) == shards
    repaired = repair_index(built, tiny_model)
    assert (repaired.rasters, repaired.tiles) == (2, 32)
    assert indexed_paths(built) == sorted(str(p.resolve()) for p in two_rasters)


# Item 3: a damaged catalog is rebuilt from the shards, never acted on.

def test_a_flipped_bit_in_a_catalog_raster_path_is_damage_not_a_deleted_raster(built, tiny_model,
                                                                                two_rasters):
    catalog, shards = catalog_of(built), shard_files(built)
    name = two_rasters[1].name.encode()  # second.tif -> recond.tif, beside it: "gone from disk"
    data = bytearray(catalog.read_bytes())
    at = data.find(name)
    assert at >= 0
    data[at] ^= 0x01
    catalog.write_bytes(bytes(data))
    summary = build_index(params(built, [], tiny_model))
    assert summary.repaired and summary.rasters_removed == 0 and summary.tiles_total == 32
    assert summary.tiles_indexed == 0
    assert shard_files(built) == shards
    assert indexed_paths(built) == sorted(str(p.resolve()) for p in two_rasters)


def test_a_catalog_row_that_does_not_match_its_shard_key_is_damage_whatever_the_checksum_says(
        built, tiny_model, two_rasters):
    catalog, shards = catalog_of(built), shard_files(built)
    catalog.chmod(0o644)
    with sqlite3.connect(catalog) as connection:
        connection.execute("UPDATE rasters SET path = ? WHERE path = ?",
                           (str(two_rasters[1].parent / "gone.tif"), str(two_rasters[1].resolve())))
    manifest = json.loads((built / MANIFEST).read_text())
    # Checksummed after the damage (a catalog written wrong, or a tool that "fixes" checksums):
    # only the row's own shard key can tell.
    manifest["segments"][0]["catalog_sha256"] = hashlib.sha256(catalog.read_bytes()).hexdigest()
    (built / MANIFEST).write_text(json.dumps(manifest))
    # The build's own check, whatever else (a catalog's row check values) finds the damage first.
    from rsir_qgis_plugin.core.builder import _row_mismatch

    mismatch = _row_mismatch(built, read_manifest(built), read_model(tiny_model))
    assert "does not match its shard key" in mismatch
    summary = build_index(params(built, [], tiny_model))
    assert summary.repaired
    assert (summary.rasters_removed, summary.tiles_total, summary.tiles_indexed) == (0, 32, 0)
    assert shard_files(built) == shards


def test_a_catalog_swapped_with_another_index_s_is_rebuilt_from_this_index_s_shards(
        tmp_path, built, tiny_model, two_rasters, town_crop):
    (tmp_path / "elsewhere").mkdir()
    third = shutil.copy2(town_crop, tmp_path / "elsewhere" / "third.tif")
    other = tmp_path / "other"
    build_index(params(other, [third], tiny_model))
    shards = shard_files(built)
    shutil.copyfile(catalog_of(other), catalog_of(built))
    summary = build_index(params(built, [], tiny_model))
    assert summary.repaired and summary.tiles_indexed == 0 and summary.tiles_total == 32
    assert indexed_paths(built) == sorted(str(p.resolve()) for p in two_rasters)
    assert shard_files(built) == shards


# Item 3b: a first build killed before its manifest is resumed; a manifest nested too deep is repairable.

def test_a_first_build_killed_between_segment_and_manifest_is_resumed(tmp_path, tiny_model, two_rasters,
                                                                      monkeypatch):
    from rsir_qgis_plugin.core.store import generation

    index = tmp_path / "first"

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # where a SIGKILL would land: the segment renamed, no manifest yet

    monkeypatch.setattr(generation, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        build_index(params(index, two_rasters, tiny_model))
    monkeypatch.undo()
    assert not (index / MANIFEST).exists() and list((index / "segments").glob("s*/catalog.sqlite"))
    resumed = build_index(params(index, two_rasters, tiny_model))
    assert (resumed.rasters_resumed, resumed.tiles_indexed, resumed.tiles_total) == (2, 0, 32)
    assert not (index / ".first-commit").exists()


def test_a_lost_manifest_of_a_committed_index_is_still_refused(built, tiny_model):
    (built / MANIFEST).unlink()
    with pytest.raises(IndexStoreError, match="index repair"):
        build_index(params(built, [], tiny_model))


def test_a_manifest_nested_too_deep_is_one_line_and_repair_and_force_recover(built, tiny_model, two_rasters):
    (built / MANIFEST).write_text("[" * 200_000 + "]" * 200_000)
    line = one_line_error(run_cli("index", "build", built, "--model", tiny_model), "manifest.json", "repair")
    assert "nested too deep" in line or "damaged" in line or "unreadable" in line
    done = run_cli("index", "repair", built, "--model", tiny_model)
    assert done.returncode == 0 and "32 tiles from 2 raster(s)" in done.stdout, done.stderr
    (built / MANIFEST).write_text("{" * 200_000)
    forced = run_cli("index", "build", built, *two_rasters, "--model", tiny_model, "--tile-size", 96,
                     "--stride", 96, "--force")
    assert forced.returncode == 0 and "2 resumed" in forced.stdout, forced.stderr
