"""Committing a new state of an index: add a segment and tombstones, or rewrite it as one segment.

The new segment's files are complete before the manifest, written last, is the commit. Files a
commit no longer uses are kept one commit longer, so a reader that read the old manifest just
before a commit can still open what it names.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..atomic import fsync_dir, is_temporary
from ..errors import IndexStoreError
from ..model import ModelInfo
from .catalog import catalog_error, open_catalog, parse_column, raster_tile_ranges
from .dba import DbaRun
from .files import faiss_write_error, os_error_message
from .integrity import manifest_problems
from .manifest import FIRST_COMMIT, FORMAT, FORMAT_VERSION, MANIFEST, SEGMENT_DIR, index_kind, write_manifest
from .segments import ShardVectors, verify_segment, write_segment
from .shards import SHARD_DIR, Shard

_SHARD_FILE = re.compile(r"([0-9a-f]{24})(\.partial)?\.npz")  # the names build_plan.shard_key gives


@dataclass(frozen=True)
class LiveRaster:
    """A raster the live index holds, and where."""

    path: str
    key: str  # its shard
    tiling: dict
    segment: str
    raster_id: int
    first_tile: int
    tile_count: int


def live_rasters(index_dir: Path, manifest: dict) -> dict[str, LiveRaster]:
    """path -> LiveRaster for every raster of the live index (tombstoned ones left out)."""
    found: dict[str, LiveRaster] = {}
    for segment in manifest["segments"]:
        path = Path(index_dir) / segment["catalog"]
        connection = open_catalog(path)
        try:
            ranges = raster_tile_ranges(connection, path)
            rows = [(i, p, parse_column("tiling", t), k)
                    for i, p, t, k in connection.execute("SELECT id, path, tiling, shard FROM rasters")]
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise catalog_error(path, exc) from exc
        finally:
            connection.close()
        dead = set(segment["dead_rasters"])
        for raster_id, raster_path, tiling, key in rows:
            if raster_id not in dead:
                first, count = ranges.get(raster_id, (0, 0))
                found[raster_path] = LiveRaster(raster_path, key, tiling, segment["name"], raster_id,
                                                first, count)
    return found


def shard_identities(index_dir: Path, manifest: dict) -> Iterator[tuple]:
    """(catalog, raster id, path, shard key, size, mtime_ns, tiling JSON, bands JSON) of every catalog row:
    what each row's shard key was made of, for the build to check the rows against their keys."""
    for segment in manifest["segments"]:
        path = Path(index_dir) / segment["catalog"]
        connection = open_catalog(path)
        try:
            rows = connection.execute(
                "SELECT id, path, shard, size, mtime_ns, tiling, bands FROM rasters").fetchall()
        except sqlite3.DatabaseError as exc:
            raise catalog_error(path, exc) from exc
        finally:
            connection.close()
        yield from ((segment["catalog"], *row) for row in rows)


def commit_changes(index_dir: Path, previous: dict | None, model: ModelInfo, new_shards: dict[str, Shard],
                   retired: list[LiveRaster], live_keys: set[str], approximate: bool | None,
                   replace_all: bool = False, drop_shards: frozenset[str] = frozenset(),
                   dba: DbaRun | None = None) -> dict:
    """Tombstone the retired rasters, add a segment of the new shards, and commit (the manifest).

    With `replace_all` the new segment replaces every segment (compaction, repair). `drop_shards`
    are the shard files this commit replaced or dropped: the only shards it deletes. With `dba` the new
    segment gets augmented search vectors, its tiles' neighbours found among it and the segments kept
    (store/dba.py), and the manifest records the setting; without, the index has none.
    """
    segments = [dict(s) for s in previous["segments"]] if previous and not replace_all else []
    by_name = {s["name"]: s for s in segments}
    for raster in retired:
        segment = by_name[raster.segment]
        segment["dead_rasters"] = sorted({*segment["dead_rasters"], raster.raster_id})
        if raster.tile_count:
            segment["dead_ranges"] = sorted([*segment["dead_ranges"],
                                             [raster.first_tile, raster.first_tile + raster.tile_count]])
            segment["dead_tiles"] += raster.tile_count
    segments = [s for s in segments if len(s["dead_rasters"]) < s["rasters"]]  # wholly dead: retired
    next_tile = previous["next_tile"] if previous else 0
    next_raster = previous["next_raster"] if previous else 1
    marker, added = Path(index_dir) / FIRST_COMMIT, None
    try:
        if previous is None:
            _create_marker(marker)
        if new_shards:
            # The new segment's neighbours are also found among the segments it joins, tombstones applied.
            extra = None if dba is None else replace(dba, others=[dict(segment) for segment in segments])
            # A new index (or --force) trains its own IVF-PQ codebook, never an old index's left in the folder.
            added = write_segment(index_dir, _next_number(index_dir, previous), new_shards, model, approximate,
                                  next_tile, next_raster, extra=extra,
                                  vectors=ShardVectors(Path(index_dir), approximate, retrain=previous is None))
            segments.append(added)
            next_tile, next_raster = next_tile + added["tiles"], next_raster + added["rasters"]
        manifest = _manifest(previous, model, segments, next_tile, next_raster, dba)
        write_manifest(index_dir, manifest)
    except (OSError, sqlite3.OperationalError, RuntimeError) as exc:
        if added is not None:  # renamed in, never committed: no manifest names it
            _remove_segment(Path(index_dir) / SEGMENT_DIR / added["name"])
        if isinstance(exc, sqlite3.OperationalError):
            exc = OSError(28, str(exc), str(index_dir))  # SQLite reports a full disk as 'disk is full'
        elif isinstance(exc, RuntimeError):  # FAISS's write_index: a C++ exception naming the failed write
            cause = faiss_write_error(exc)
            if cause is None:
                raise
            exc = cause
        raise os_error_message(exc, index_dir, "cannot write the new index segment") from None
    if previous is None and not marker.is_symlink():
        marker.unlink(missing_ok=True)
    remove_stale_files(index_dir, manifest, previous, live_keys, drop_shards)
    return manifest


def next_segment_number(index_dir: Path, manifest: dict) -> int:
    """The number the next segment written beside this manifest's gets."""
    return _next_number(index_dir, manifest)


def commit_merge(index_dir: Path, previous: dict, merged: list[str], added: dict) -> dict:
    """Commit a merge: the segment `added` (already renamed in) replaces the segments named `merged`.

    The manifest is written last, as for a build: a kill before it leaves the previous state whole (the
    unnamed segment folder is removed by the next commit), a kill after it the merged state whole (the
    merged segments' folders are kept one commit longer, for readers of the previous manifest).
    """
    gone = [s for s in previous["segments"] if s["name"] in merged]
    live = sum(s["tiles"] - s["dead_tiles"] for s in gone)
    if added["tiles"] != live or added["rasters"] != sum(s["rasters"] - len(s["dead_rasters"]) for s in gone):
        _remove_segment(Path(index_dir) / SEGMENT_DIR / added["name"])
        raise IndexStoreError(f"{index_dir}: the merged segment holds {added['tiles']} tiles where the segments "
                              f"{', '.join(merged)} hold {live} live ones; nothing was changed")
    segments = [dict(s) for s in previous["segments"] if s["name"] not in merged] + [added]
    manifest = {**previous, "generation": previous["generation"] + 1, "segments": segments,
                "next_tile": previous["next_tile"] + added["tiles"],
                "next_raster": previous["next_raster"] + added["rasters"],
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    manifest["index_kind"] = index_kind(manifest)
    try:
        write_manifest(index_dir, manifest)
    except OSError as exc:
        _remove_segment(Path(index_dir) / SEGMENT_DIR / added["name"])
        raise os_error_message(exc, index_dir, "cannot commit the merged segment") from None
    remove_stale_files(Path(index_dir), manifest, previous, set())
    return manifest


def _remove_segment(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


def _create_marker(marker: Path) -> None:
    """The first-commit marker (manifest.FIRST_COMMIT), durable before any segment is renamed in."""
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    os.close(fd)
    fsync_dir(marker.parent)


def write_generation(index_dir: Path, shards: dict[str, Shard], model: ModelInfo,
                     approximate: bool | None, previous: dict | None,
                     drop_shards: frozenset[str] = frozenset(), dba: DbaRun | None = None) -> dict:
    """Commit an index of exactly these shards, as one new segment (compaction, repair, first build)."""
    return commit_changes(index_dir, previous, model, shards, [], set(shards), approximate, replace_all=True,
                          drop_shards=drop_shards, dba=dba)


def _manifest(previous: dict | None, model: ModelInfo, segments: list[dict], next_tile: int,
              next_raster: int, dba: DbaRun | None) -> dict:
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "generation": (previous["generation"] + 1) if previous else 1,
        "model": {**model.identity, "path": str(model.path)},
        "tile_count": sum(s["tiles"] - s["dead_tiles"] for s in segments),
        "raster_count": sum(s["rasters"] - len(s["dead_rasters"]) for s in segments),
        "next_tile": next_tile, "next_raster": next_raster, "segments": segments,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if dba is not None:  # absent without DBA: the manifest of an index without it is as rsir wrote it before
        manifest["dba"] = dict(dba.setting)
    manifest["index_kind"] = index_kind(manifest)
    return manifest


def _next_number(index_dir: Path, previous: dict | None) -> int:
    """One past every segment named in the manifest or present in the folder."""
    names = [s["name"] for s in previous["segments"]] if previous else []
    folder = Path(index_dir) / SEGMENT_DIR
    if folder.is_dir():
        names += [p.name.strip(".").split(".")[0] for p in folder.iterdir()]
    numbers = [int(m.group(1)) for m in (re.fullmatch(r"s(\d+)", n) for n in names) if m]
    return max([previous["generation"] if previous else 0, *numbers]) + 1


def verify_generation(index_dir: Path, manifest: dict) -> str | None:
    """What is wrong with the live segments' files, or None when they are whole."""
    dim = manifest["model"]["embedding_dim"]
    problems = [f"{MANIFEST}: {p}" for p in manifest_problems(manifest)]
    problems += [p for p in (verify_segment(index_dir, s, dim) for s in manifest["segments"]) if p]
    live = sum(s["tiles"] - s["dead_tiles"] for s in manifest["segments"])
    if live != manifest["tile_count"]:
        problems.append(f"the segments hold {live} live tiles where the manifest records {manifest['tile_count']}")
    return "; ".join(problems) or None


def remove_stale_files(index_dir: Path, manifest: dict, previous: dict | None, live_shards: set[str],
                       drop_shards: frozenset[str] = frozenset()) -> None:
    """After a commit: files of neither this nor the previous state, the shards this commit replaced or
    dropped, checkpoints of rasters now finished, temporaries.

    Other shards are never deleted: a shard no manifest names (left by a killed build, or by rasters
    that `--force` was not given) is still a raster's embeddings that `index repair` can recover.
    Nothing is deleted inside a folder that is a link (refused before, see files.refuse_links).
    """
    keep = {MANIFEST, ".lock"}
    for state in (manifest, previous):
        for segment in (state or {}).get("segments", []):
            keep |= {segment["catalog"], segment["vectors"], segment["catalog"].rsplit("/", 1)[0]}
    for path in index_dir.iterdir():
        if path.name not in keep and (path.name.startswith(("catalog-", "vectors-")) or is_temporary(path)):
            _remove_if_possible(path)
    segments = index_dir / SEGMENT_DIR
    if segments.is_dir() and not segments.is_symlink():
        for path in segments.iterdir():
            if f"{SEGMENT_DIR}/{path.name}" not in keep and path.is_dir() and not path.is_symlink() and (
                    re.fullmatch(r"\.?s\d+(\.tmp)?", path.name)):
                shutil.rmtree(path, ignore_errors=True)
    shard_dir = index_dir / SHARD_DIR
    if shard_dir.is_dir() and not shard_dir.is_symlink():
        for path in shard_dir.iterdir():
            name = _SHARD_FILE.fullmatch(path.name)
            if name is None:
                if is_temporary(path) and path.name.endswith(".npz"):
                    _remove_if_possible(path)  # a shard writer's temporary, killed before its rename
            elif name.group(2) and (name.group(1) in live_shards or name.group(1) in drop_shards):
                _remove_if_possible(path)  # the checkpoint of a raster finished (or dropped) since
            elif not name.group(2) and name.group(1) in drop_shards and name.group(1) not in live_shards:
                _remove_if_possible(path)
    fsync_dir(index_dir)


def _remove_if_possible(path: Path) -> None:
    """Remove a file of ours; leave what cannot be removed (or is not a plain file) for later.

    Windows refuses to delete a file a reader still has open (a search of the previous state):
    the commit is already done, so the file is left for the next build to remove.
    """
    if path.is_symlink() or not path.is_file():
        return
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
