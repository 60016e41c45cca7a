"""Segments: immutable parts of an index, each a catalog and vectors for a set of rasters.

    INDEX_DIR/segments/s<number>/catalog.sqlite   rasters and tiles (index-wide ids)
    INDEX_DIR/segments/s<number>/vectors.faiss    FAISS, local ids 0..n-1 = tile ids base..base+n-1
    INDEX_DIR/segments/s<number>/vectors.f16      float16 copy, for ivfpq segments (exact re-ranking)
    INDEX_DIR/segments/s<number>/search.faiss     with DBA: the augmented search vectors (store/dba.py),
    INDEX_DIR/segments/s<number>/search.f16       the same kind of index and copy

A segment is written once and never changed: a build adds one, tombstones (recorded in the
manifest) hide the tiles of rasters that were replaced or removed, and compaction writes one
new segment of everything live.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_path, fsync_dir, umask_mode
from ..errors import IndexStoreError
from ..model import ModelInfo
from .catalog import TileEntry, catalog_error, open_catalog, read_rasters, tile_count, write_catalog
from .codebook import shared_codebook
from .files import file_sha256
from .integrity import check_catalog, file_sample, seed_of, verify_tile_rows
from .manifest import SEGMENT_DIR
from .shards import Shard
from .vector_set import AUGMENTED, ORIGINAL, VectorSet
from .vectors import choose_kind, make_faiss_index, write_f16, write_index

# Writes more files into a segment folder being filled (DBA's search vectors: store/dba.py), given the folder,
# the shards in catalog order, their vectors and the FAISS index made of them and its kind; returns
# ({manifest key: file name in the folder}, more manifest fields). Called before the folder is renamed in.
SegmentExtra = Callable[[Path, list[tuple[str, Shard]], list[np.ndarray], object, str], tuple[dict, dict]]
# Writes vectors.faiss (and for ivfpq vectors.f16) into a segment folder being filled, given the folder and
# the shards in catalog order; returns (kind, the FAISS index, more manifest fields). The default encodes the
# shards' vectors (ShardVectors); a merge copies codes from the merged segments (store/merge.py).
VectorWriter = Callable[[Path, list[tuple[str, Shard]]], tuple[str, object, dict]]


@dataclass(frozen=True)
class ShardVectors:
    """The vectors of a segment made from its shards' float32 vectors: flat, ivf, or ivfpq encoded with
    the index's shared codebook (trained here where the index has none, or afresh with `retrain`)."""

    index_dir: Path
    approximate: bool | None
    retrain: bool = False

    def __call__(self, folder: Path, ordered: list[tuple[str, Shard]]) -> tuple[str, object, dict]:
        chunks = shard_chunks(ordered)
        kind = choose_kind(sum(len(c) for c in chunks), self.approximate)
        fields = {}
        if kind == "ivfpq":
            codebook = shared_codebook(self.index_dir, chunks, self.retrain)
            index, fields = codebook.filled(chunks), {"codebook": codebook.sha256}
        else:
            index = make_faiss_index(chunks, kind)
        write_index(index, folder / "vectors.faiss")
        if kind == "ivfpq":
            write_f16(folder / "vectors.f16", chunks)
        return kind, index, fields


def shard_chunks(ordered: list[tuple[str, Shard]]) -> list[np.ndarray]:
    dim = ordered[0][1].vectors.shape[1] if ordered else 0
    return [s.vectors for _, s in ordered if len(s.vectors)] or [np.zeros((0, dim), np.float32)]


def write_segment(index_dir: Path, number: int, shards: dict[str, Shard], model: ModelInfo,
                  approximate: bool | None, base: int, first_raster: int,
                  extra: SegmentExtra | None = None, vectors: VectorWriter | None = None) -> dict:
    """Write a segment of these shards (sorted by raster path) and return its manifest record.

    The folder is filled under a temporary name and renamed at the end, so a killed writer
    leaves no half segment under a live name. `extra` adds files to it before the rename; each gets
    its path, sha256 and sample digest in the record (keys <key>, <key>_sha256, <key>_sample).
    `vectors` writes its vectors (default: ShardVectors, from the shards' float32 vectors).
    """
    name = f"s{number:06d}"
    segments = Path(index_dir) / SEGMENT_DIR
    segments.mkdir(exist_ok=True)
    final, building = segments / name, segments / f".{name}.tmp"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(mode=umask_mode(0o777))
    ordered = sorted(shards.items(), key=lambda item: item[1].record["path"])
    count = sum(len(s.vectors) for _, s in ordered)
    writer = vectors or ShardVectors(Path(index_dir), approximate)
    # The identity stamp: the manifest record and the catalog both hold it, so a catalog of another
    # segment or index is refused when opened (integrity.check_catalog).
    stamp = {"uid": uuid.uuid4().hex, "base": base, "tiles": count, "first_raster": first_raster,
             "rasters": len(ordered)}
    try:
        with atomic_path(building / "catalog.sqlite") as tmp:
            tmp.unlink()
            write_catalog(tmp, ordered, first_tile=base, first_raster=first_raster, meta=stamp)
            os.chmod(tmp, umask_mode())  # SQLite creates its files 0644 whatever the umask
        kind, index, vector_fields = writer(building, ordered)
        vector_bytes = (building / "vectors.faiss").stat().st_size
        files, fields = extra(building, ordered, shard_chunks(ordered), index, kind) if extra else ({}, {})
        del index
        shutil.rmtree(final, ignore_errors=True)  # a leftover of a commit that never happened
        os.replace(building, final)
        fsync_dir(segments)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    prefix = f"{SEGMENT_DIR}/{name}"
    record = {"name": name, "catalog": f"{prefix}/catalog.sqlite", "vectors": f"{prefix}/vectors.faiss",
              "f16": f"{prefix}/vectors.f16" if kind == "ivfpq" else None, "kind": kind, **stamp,
              "catalog_sha256": file_sha256(final / "catalog.sqlite"), "vectors_bytes": vector_bytes,
              "vectors_sha256": file_sha256(final / "vectors.faiss"),
              "vectors_sample": file_sample(final / "vectors.faiss"),
              "dead_rasters": [], "dead_ranges": [], "dead_tiles": 0}
    if kind == "ivfpq":
        f16 = final / "vectors.f16"
        record |= {"f16_sha256": file_sha256(f16), "f16_sample": file_sample(f16)}
    for key, file_name in files.items():
        record |= {key: f"{prefix}/{file_name}", f"{key}_sha256": file_sha256(final / file_name),
                   f"{key}_sample": file_sample(final / file_name)}
    return record | vector_fields | fields


SQL_VARIABLES = 30_000  # ids a catalog query takes at once (SQLite's lowest default limit is 32766)
SEGMENT_FILES = (("catalog", "catalog_sha256"), ("vectors", "vectors_sha256"), ("f16", "f16_sha256"),
                 ("search", "search_sha256"), ("search_f16", "search_f16_sha256"))


def verify_segment(index_dir: Path, segment: dict, dim: int) -> str | None:
    """What is wrong with a segment's files, or None when they are whole.

    Every file the segment holds is read through (in 1 MiB blocks) and checked against its recorded
    checksum, at any size: a build must never carry damage forward. Opening, which every search
    does, only checks sizes, counts and identity stamps (SegmentReader).
    """
    index_dir = Path(index_dir)
    for name, key in SEGMENT_FILES:
        if segment.get(name) is None:
            continue
        path = index_dir / segment[name]
        if not path.is_file():
            return f"{segment['catalog'].rsplit('/', 1)[0]}: {path.name} is missing"
        if segment.get(key) and file_sha256(path) != segment[key]:
            return f"{path.relative_to(index_dir)} does not match the checksum the manifest recorded"
    try:
        SegmentReader(index_dir, segment, dim).close()
    except Exception as exc:  # noqa: BLE001 - any failure to read the segment is damage to report
        return str(exc)
    return None


class SegmentReader:
    """One segment opened for searching: its catalog (read-only), FAISS index (memory-mapped), tombstones."""

    def __init__(self, index_dir: Path, segment: dict, dim: int):
        self.segment, self.base, self.count = segment, segment["base"], segment["tiles"]
        self.catalog_path = Path(index_dir) / segment["catalog"]
        self.vectors_path = Path(index_dir) / segment["vectors"]
        self.db = open_catalog(self.catalog_path, check_same_thread=False)
        try:
            dead = set(segment["dead_rasters"])
            self.rasters = {i: r for i, r in read_rasters(self.db, self.catalog_path).items() if i not in dead}
            tiles = tile_count(self.db, self.catalog_path)
            if tiles != segment["tiles"] or len(self.rasters) + len(dead) != segment["rasters"]:
                raise _count_mismatch(self.catalog_path, tiles, len(self.rasters) + len(dead), segment)
            try:
                meta = check_catalog(index_dir, segment, self.db, self.catalog_path)
                self._row_checks = meta is not None and "row_check" in {
                    r[1] for r in self.db.execute("PRAGMA table_info(tiles)")}
            except sqlite3.DatabaseError as exc:
                raise catalog_error(self.catalog_path, exc) from exc
            self._seed = seed_of((meta or {}).get("uid", ""))
            self.original = VectorSet(index_dir, segment, dim, ORIGINAL)
            # The augmented search vectors (DBA) where the segment has them; the reader decides whether the
            # index as a whole searches them (all segments must have them: IndexReader.augmented).
            self.augmented = VectorSet(index_dir, segment, dim, AUGMENTED) if segment.get("search") else None
        except BaseException:
            self.db.close()
            raise
        ranges = np.array(segment["dead_ranges"], dtype=np.int64).reshape(-1, 2) - self.base
        self.dead_starts, self.dead_ends = ranges[:, 0], ranges[:, 1]
        self.live = self.count - segment["dead_tiles"]

    def close(self) -> None:
        self.db.close()

    def _is_dead(self, local: np.ndarray) -> np.ndarray:
        if not len(self.dead_starts):
            return np.zeros(len(local), bool)
        at = np.searchsorted(self.dead_starts, local, side="right") - 1
        return (at >= 0) & (local < self.dead_ends[np.maximum(at, 0)])

    def search(self, queries: np.ndarray, k: int, augmented: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(nq, k) scores and index-wide tile ids of the best live tiles, best first (-1 padding).

        `augmented`: search the segment's augmented vectors (it must have them), else the model's.
        Tombstoned tiles are skipped: candidates are fetched in growing rounds until each query has
        k live ones (or the segment is exhausted), so a segment with many replaced tiles costs more
        only for the queries that meet them.
        """
        vectors = self._set(augmented)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        out_ids = np.full((len(queries), k), -1, np.int64)
        if k == 0 or self.live == 0:
            return out_scores[:, :0], out_ids[:, :0]
        wanted, enough = min(self.count, k + min(self.segment["dead_tiles"], k)), min(k, self.live)
        while True:
            scores, local = vectors.candidates(queries, wanted)
            valid = (local >= 0) & ~self._is_dead(local.ravel()).reshape(local.shape)
            if wanted >= self.count or valid.sum(axis=1).min() >= enough:
                break
            wanted = min(self.count, wanted * 4)
        for row in range(len(queries)):
            keep = np.flatnonzero(valid[row])[:k]
            out_scores[row, :len(keep)] = scores[row, keep]
            out_ids[row, :len(keep)] = local[row, keep] + self.base
        return out_scores, out_ids

    def _set(self, augmented: bool) -> VectorSet:
        if augmented and self.augmented is None:
            raise IndexStoreError(f"{self.catalog_path.parent}: this segment has no augmented vectors")
        return self.augmented if augmented else self.original

    def tiles(self, ids: list[int], lock) -> dict[int, TileEntry]:
        rows = []
        check = "row_check" if self._row_checks else "0"
        try:
            with lock:
                # In chunks: SQLite builds allow as few as 32766 variables a statement.
                for start in range(0, len(ids), SQL_VARIABLES):
                    chunk = ids[start:start + SQL_VARIABLES]
                    rows += self.db.execute(
                        f"SELECT id, raster_id, col, row, width, height, xmin, ymin, xmax, ymax, lon_min, lat_min, "
                        f"lon_max, lat_max, {check} FROM tiles WHERE id IN ({','.join('?' * len(chunk))})",
                        chunk).fetchall()
            if self._row_checks:  # a hit's row must be the row written for its vector (integrity.py)
                verify_tile_rows(self.catalog_path, self._seed, rows)
            return {row[0]: TileEntry(id=row[0], raster=self.rasters[row[1]], window=tuple(row[2:6]),
                                      bounds=tuple(row[6:10]), bounds_4326=tuple(row[10:14])) for row in rows}
        except (sqlite3.DatabaseError, KeyError) as exc:
            raise catalog_error(self.catalog_path, exc) from exc

    def tile_at(self, raster_id: int, window: tuple[int, int, int, int], lock) -> int | None:
        try:
            with lock:
                row = self.db.execute(
                    "SELECT id FROM tiles WHERE raster_id = ? AND col = ? AND row = ? AND width = ? AND height = ? "
                    "ORDER BY id LIMIT 1", (raster_id, *[int(v) for v in window])).fetchone()
        except sqlite3.DatabaseError as exc:
            raise catalog_error(self.catalog_path, exc) from exc
        return None if row is None else int(row[0])

    def vectors(self, local: np.ndarray, augmented: bool = False) -> np.ndarray:
        """Stored vectors by local id (the model's, or with `augmented` the DBA ones): exact for flat and
        ivf, float16-exact for ivfpq."""
        return self._set(augmented).vectors(local)

    def footprint_rows(self, ids: np.ndarray, lock) -> tuple[np.ndarray, np.ndarray]:
        """(raster ids (n,), windows (n, 4)) of the given index-wide tile ids, in their order, from the
        catalog in one query per SQL_VARIABLES ids (no row checks: neighbour search at build time reads
        a generation the build has just verified whole)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows: dict[int, tuple] = {}
        try:
            with lock:
                for start in range(0, len(ids), SQL_VARIABLES):
                    chunk = ids[start:start + SQL_VARIABLES].tolist()
                    for row in self.db.execute(f"SELECT id, raster_id, col, row, width, height FROM tiles WHERE id "
                                               f"IN ({','.join('?' * len(chunk))})", chunk):
                        rows[row[0]] = row[1:]
            table = np.array([rows[i] for i in ids.tolist()], dtype=np.int64).reshape(-1, 5)
        except (sqlite3.DatabaseError, KeyError) as exc:
            raise catalog_error(self.catalog_path, exc) from exc
        return table[:, 0], table[:, 1:]

    def live_local_ids(self) -> np.ndarray:
        ids = np.arange(self.count)
        return ids[~self._is_dead(ids)]


def _count_mismatch(path: Path, tiles: int, rasters: int, segment: dict) -> IndexStoreError:
    return IndexStoreError(
        f"{path}: lists {tiles} tiles of {rasters} raster(s) where the manifest records {segment['tiles']} "
        f"of {segment['rasters']}; the index is damaged, run `index build` to rebuild it")
