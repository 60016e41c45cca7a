"""Reading the live generation of an index for searching, and describing an index."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import KeyedCache
from ..errors import IndexStoreError
from .catalog import RasterEntry, TileEntry, catalog_error, open_catalog, raster_tile_ranges
from .integrity import check_manifest
from .manifest import MANIFEST, require_manifest
from .segments import SegmentReader

OPEN_ATTEMPTS = 3  # a commit may replace the generation while a reader opens it


class IndexReader:
    """The live segments of an index, opened read-only for searching.

    Catalogs are opened before the (slow) FAISS reads, and a state that a commit replaced in the
    meantime is followed to the new manifest, so opening during a build never fails.
    """

    def __init__(self, index_dir: str | Path):
        self.index_dir = Path(index_dir)
        for attempt in range(OPEN_ATTEMPTS):
            manifest = require_manifest(self.index_dir)
            try:
                self._open(manifest)
                return
            except IndexStoreError:
                if attempt == OPEN_ATTEMPTS - 1 or require_manifest(self.index_dir) == manifest:
                    raise

    def _open(self, manifest: dict) -> None:
        check_manifest(self.index_dir, manifest)  # its numbers agree with each other (a flipped digit)
        dim = manifest["model"]["embedding_dim"]
        segments: list[SegmentReader] = []
        try:
            for segment in manifest["segments"]:
                segments.append(SegmentReader(self.index_dir, segment, dim))
        except BaseException:
            for opened in segments:
                opened.close()
            raise
        live = sum(segment.live for segment in segments)
        if live != manifest["tile_count"]:
            for opened in segments:
                opened.close()
            raise IndexStoreError(f"{self.index_dir / MANIFEST}: its segments hold {live} live tiles where the "
                                  f"manifest records {manifest['tile_count']}; the index is damaged, run "
                                  "`index build` to rebuild it")
        self.manifest, self._segments, self.dim = manifest, segments, dim
        # The DBA setting the search vectors were made with, when every segment has them: a segment without
        # (added by an rsir before DBA) would score on another scale, so then all search the model's vectors.
        dba = manifest.get("dba")
        self.augmented: dict | None = dba if dba and all(seg.augmented for seg in segments) else None
        self.rasters = {i: r for seg in segments for i, r in seg.rasters.items()}
        self._bases = np.array([seg.base for seg in segments], dtype=np.int64)
        self._db_lock = threading.Lock()  # a shared reader may serve searches from several threads

    @property
    def segments(self) -> list[SegmentReader]:
        if self._segments is None:
            raise IndexStoreError(f"{self.index_dir}: this reader of the index was closed (rsir released its "
                                  "open indexes); search again to open it afresh")
        return self._segments

    def close(self) -> None:
        """Close the catalogs and let go of the segments: their memory-mapped vectors files are unmapped
        with the last reference, so the index folder can then be renamed or deleted (Windows refuses
        while a file in it is open or mapped). Using the reader afterwards raises IndexStoreError."""
        segments, self._segments = self._segments, None
        for segment in segments or ():
            segment.close()

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def size(self) -> int:
        """Live tiles."""
        return int(self.manifest["tile_count"])

    def search(self, query: np.ndarray, k: int, augmented: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Scores and tile ids of the k nearest live tiles (inner product of unit vectors = cosine).

        `augmented`: rank by the index's DBA search vectors where it has them (self.augmented), else by
        the model's embeddings; False: always by the model's embeddings (the ranking of rsir before DBA).
        """
        k = min(k, self.size)
        queries = np.ascontiguousarray(query.reshape(1, -1), np.float32)
        use = augmented and self.augmented is not None
        found = [segment.search(queries, k, use) for segment in self.segments]
        if not found or k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores = np.concatenate([s[0] for s, _ in found])
        ids = np.concatenate([s[0] for _, s in found])
        order = np.argsort(-scores, kind="stable")[:k]
        keep = ids[order] >= 0
        return scores[order][keep], ids[order][keep]

    def _segment_of(self, ids: np.ndarray) -> np.ndarray:
        """Which segment holds each tile id; an error for ids no live segment holds."""
        where = np.searchsorted(self._bases, ids, side="right") - 1
        ends = np.array([seg.base + seg.count for seg in self.segments], dtype=np.int64)
        outside = (where < 0) | (ids >= ends[np.maximum(where, 0)]) if len(self.segments) else np.ones(len(ids), bool)
        if outside.any():
            raise IndexStoreError(f"{self.index_dir}: tile {int(ids[outside][0])} is not in the index "
                                  "(tile ids change when an index is compacted)")
        return where

    def tiles(self, ids: list[int]) -> list[TileEntry]:
        """Catalog entries of the given tile ids, in the same order."""
        if not len(ids):
            return []
        ids = [int(i) for i in ids]
        found: dict[int, TileEntry] = {}
        where = self._segment_of(np.array(ids))
        for number in np.unique(where):
            found.update(self.segments[number].tiles([i for i, w in zip(ids, where) if w == number], self._db_lock))
        try:
            return [found[i] for i in ids]
        except KeyError as exc:
            raise IndexStoreError(f"{self.index_dir}: tile {exc} is not in the index") from None

    def first_tile_ids(self) -> list[int]:
        """The id of the first tile of each live raster that has tiles (a raster's tiles are consecutive)."""
        firsts = []
        for segment in self.segments:
            with self._db_lock:
                ranges = raster_tile_ranges(segment.db, segment.catalog_path)
            firsts += [first for raster_id, (first, count) in ranges.items()
                       if count and raster_id in segment.rasters]
        return firsts

    def raster_tile_ids(self, raster_ids) -> np.ndarray:
        """The live tile ids of the given live rasters, ascending: what a search of only some rasters (a
        standing search's new ones, core/standing.py) ranks."""
        wanted = {int(i) for i in raster_ids}
        found = [np.zeros(0, np.int64)]
        for segment in self.segments:
            mine = wanted.intersection(segment.rasters)
            if not mine:
                continue
            with self._db_lock:
                ranges = raster_tile_ranges(segment.db, segment.catalog_path)
            ids = [np.arange(first, first + count, dtype=np.int64)
                   for raster_id, (first, count) in ranges.items() if raster_id in mine and count]
            if ids:
                ids = np.concatenate(ids)
                found.append(ids[np.isin(ids, segment.live_local_ids() + segment.base)])
        return np.unique(np.concatenate(found))

    def tile_at(self, raster: RasterEntry, window: tuple[int, int, int, int]) -> int | None:
        """The id of the live tile of `raster` whose pixel window is exactly `window`, if any."""
        for segment in self.segments:
            if segment.rasters.get(raster.id) is raster:
                return segment.tile_at(raster.id, window, self._db_lock)
        return None

    def vectors(self, ids, augmented: bool = False) -> np.ndarray:
        """The stored (n, D) float32 embeddings of the given tile ids; with `augmented`, their DBA search
        vectors where the index has them (as search())."""
        use = augmented and self.augmented is not None
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), self.dim), np.float32)
        where = self._segment_of(ids)
        for number in np.unique(where):
            rows = np.flatnonzero(where == number)
            segment = self.segments[number]
            out[rows] = segment.vectors(ids[rows] - segment.base, use)
        return out

    def iter_tiles(self, batch: int = 65536) -> Iterator[tuple[list[TileEntry], np.ndarray]]:
        """Every live tile with its embedding, in id order, `batch` tiles at a time."""
        for segment in self.segments:
            live = segment.live_local_ids() + segment.base
            for start in range(0, len(live), batch):
                ids = live[start:start + batch]
                yield self.tiles(ids.tolist()), self.vectors(ids)


# Dropped, not closed, when evicted: a search in another thread may still hold one; it closes when freed.
_READERS: KeyedCache[IndexReader] = KeyedCache(size=2, close=IndexReader.close)


def shared_reader(index_dir: str | Path) -> IndexReader:
    """An open reader of the index's live generation, kept for the next query.

    Loading a large FAISS file takes seconds; a user drawing box after box should pay it once. The
    key holds the manifest's identity, so a rebuilt index (a new manifest) is opened afresh.
    cache.release_shared() closes the kept readers.
    """
    index_dir = Path(index_dir).expanduser().resolve()
    require_manifest(index_dir)
    stat = (index_dir / MANIFEST).stat()
    return _READERS.get((str(index_dir), stat.st_ino, stat.st_mtime_ns), lambda: IndexReader(index_dir))


@dataclass(frozen=True)
class IndexInfo:
    index_dir: str
    rasters: tuple[tuple[str, int], ...]  # (path, tiles)
    tile_count: int
    model: dict
    index_kind: str
    size_bytes: int
    generation: int
    built_at: str
    segments: int = 1
    dead_tiles: int = 0  # tombstoned, until compaction
    dba: dict | None = None  # the DBA setting of its search vectors (store/dba.py), None without DBA

    def describe(self) -> str:
        model = self.model
        lines = [f"index {self.index_dir} (generation {self.generation}, built {self.built_at})",
                 f"model: {model['name']} ({model['embedding_dim']}-d, {model.get('input_size', '?')} px, "
                 f"sha256 {model['sha256'][:12]}, {model.get('path', '?')})",
                 f"{self.tile_count} tiles from {len(self.rasters)} raster(s), {self.index_kind} search, "
                 f"{self.segments} segment(s), {self.size_bytes / 1e6:.1f} MB on disk"]
        if self.dba:
            lines.append(f"search vectors: database-side augmentation (top {self.dba['neighbours']} neighbours, "
                         f"alpha {self.dba['alpha']:g})")
        if self.dead_tiles:
            lines.append(f"{self.dead_tiles} replaced tiles await compaction (`index compact`)")
        lines += [f"  {tiles:8d}  {path}" for path, tiles in self.rasters]
        return "\n".join(lines)


def read_index_info(index_dir: str | Path) -> IndexInfo:
    index_dir = Path(index_dir)
    manifest = require_manifest(index_dir)
    rasters = []
    for segment in manifest["segments"]:
        path = index_dir / segment["catalog"]
        connection = open_catalog(path)
        try:
            dead = set(segment["dead_rasters"])
            rasters += [(p, n) for i, p, n in connection.execute("SELECT id, path, tile_count FROM rasters")
                        if i not in dead]
        except sqlite3.DatabaseError as exc:
            raise catalog_error(path, exc) from exc
        finally:
            connection.close()
    size = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    return IndexInfo(index_dir=str(index_dir), rasters=tuple(sorted(rasters)), tile_count=manifest["tile_count"],
                     model=manifest["model"], index_kind=manifest.get("index_kind") or "flat", size_bytes=size,
                     generation=manifest["generation"], built_at=manifest["built_at"],
                     segments=len(manifest["segments"]),
                     dead_tiles=sum(s["dead_tiles"] for s in manifest["segments"]),
                     dba=manifest.get("dba") if all(s.get("search") for s in manifest["segments"]) else None)
