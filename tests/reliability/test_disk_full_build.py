"""A build on a real full disk (a small tmpfs filled to many levels) is one line, "disk full: INDEX", and
leaves the previous index intact (issue 20 item 13: a new index on a full disk, FAISS's write failing)."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import IndexStoreError
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader

from .conftest import one_line_error, params, run_cli, snapshot
from .mounts import tmpfs

# Bytes left free. Two rasters' index takes ~180 kB: 2 shards of 41 kB, a 28 kB catalog, a 66 kB FAISS file,
# so these levels fail at the lock, the shards, the catalog, the FAISS file and the manifest, or succeed.
NEW_INDEX_FREE = [0, 4096, 40_000, 90_000, 100_000, 110_000, 125_000, 140_000, 150_000, 160_000, 170_000,
                  180_000, 188_000, 194_000, 200_000, 260_000]
# A refresh that re-embeds one raster writes a shard (41 kB), a segment (~50 kB) and a manifest.
REFRESH_FREE = [0, 4096, 20_000, 45_000, 60_000, 70_000, 80_000, 90_000, 100_000, 120_000, 160_000]


def small_disks(tmp_path: Path, free_levels: list[int]) -> Iterator[tuple[int, Path]]:
    """(bytes to leave free, index folder) on a fresh 1 MB tmpfs per level, unmounted before the next."""
    for free in free_levels:
        disk = tmp_path / f"disk-{free}"
        with tmpfs(disk, "1m"):
            yield free, disk / "idx"


def fill(disk: Path, free: int) -> Path:
    """A file that leaves `free` bytes of the disk unused."""
    info = os.statvfs(disk)
    left = max(0, info.f_bavail * info.f_frsize - free)
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while left > 0:
                left -= handle.write(b"\0" * min(left, 1 << 20))
        except OSError:
            pass  # full already
    return filler


def disk_full(exc: IndexStoreError, index: Path) -> None:
    text = str(exc)
    assert "\n" not in text and text.startswith(f"disk full: {index} "), text


def no_temporaries(index: Path) -> None:
    assert not [p for p in index.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]


@pytest.fixture
def rasters(tmp_path, town_crop) -> list[Path]:
    return [town_crop, Path(shutil.copy2(town_crop, tmp_path / "second.tif"))]


def test_a_new_index_on_a_full_disk_is_one_line_at_every_fill_level(tmp_path, tiny_model, rasters):
    outcomes = []
    for free, index in small_disks(tmp_path, NEW_INDEX_FREE):
        filler = fill(index.parent, free)
        try:
            summary = build_index(params(index, rasters, tiny_model))
        except IndexStoreError as exc:
            disk_full(exc, index)
            assert not (index / MANIFEST).exists()
            outcomes.append("full")
        else:
            assert summary.tiles_total == 32
            outcomes.append("ok")
        no_temporaries(index)
        filler.unlink()  # space again: the build goes through, reusing what was saved
        assert build_index(params(index, rasters, tiny_model)).tiles_total == 32
    assert outcomes[0] == "full" and outcomes[-1] == "ok" and outcomes.count("full") >= 10, outcomes


def test_a_refresh_on_a_full_disk_is_one_line_and_the_previous_index_is_intact(tmp_path, tiny_model, rasters):
    outcomes = []
    for free, index in small_disks(tmp_path, REFRESH_FREE):
        build_index(params(index, rasters, tiny_model))
        before = snapshot(index)
        filler = fill(index.parent, free)
        os.utime(rasters[1], ns=(free + 1, free + 1))  # changed: re-embedded into a new segment
        try:
            build_index(params(index, [], tiny_model))
        except IndexStoreError as exc:
            disk_full(exc, index)
            assert str(exc).endswith("the previous index is unchanged")
            after = snapshot(index)
            assert {k: v for k, v in after.items() if not k.startswith("shards/")} == {
                k: v for k, v in before.items() if not k.startswith("shards/")}
            outcomes.append("full")
        else:
            outcomes.append("ok")
        no_temporaries(index)
        with IndexReader(index) as reader:
            assert reader.size == 32
        filler.unlink()
        assert build_index(params(index, [], tiny_model)).tiles_total == 32
    assert outcomes[0] == "full" and outcomes[-1] == "ok" and outcomes.count("full") >= 6, outcomes


@pytest.mark.parametrize("free", [0, 150_000])  # at the lock; at the FAISS file (write_index)
def test_the_command_line_on_a_full_disk_prints_one_line(tmp_path, tiny_model, rasters, free):
    disk = tmp_path / "disk"
    with tmpfs(disk, "1m"):
        fill(disk, free)
        done = run_cli("index", "build", disk / "idx", *rasters, "--model", tiny_model, "--tile-size", 96,
                       "--stride", 96)
        one_line_error(done, f"disk full: {disk / 'idx'} ", "nothing was committed")
        assert done.returncode == 1
