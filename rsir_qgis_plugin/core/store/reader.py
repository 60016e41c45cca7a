"""Reading the live generation of an index for searching, and describing an index."""
from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import IndexStoreError
from .catalog import TileEntry, catalog_error, open_catalog, read_rasters, tile_count
from .manifest import MANIFEST, require_manifest
from .vectors import read_vectors

OPEN_ATTEMPTS = 3  # a commit may replace the generation while a reader opens it


class IndexReader:
    """The live generation of an index, opened read-only for searching.

    The catalog is opened before the (slow) FAISS read, and a generation that a commit replaced
    in the meantime is followed to the new manifest, so opening during a build never fails.
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
        catalog_path = self.index_dir / manifest["catalog"]
        db = open_catalog(self.index_dir, manifest, check_same_thread=False)
        try:
            rasters = read_rasters(db, catalog_path)
            tiles = tile_count(db, catalog_path)
            if tiles != manifest["tile_count"] or len(rasters) != manifest["raster_count"]:
                raise IndexStoreError(
                    f"{catalog_path}: lists {tiles} tiles of {len(rasters)} raster(s) where the manifest "
                    f"records {manifest['tile_count']} of {manifest['raster_count']}; the index is damaged, "
                    "run `index build` to rebuild it")
            self.faiss_index = read_vectors(self.index_dir / manifest["vectors"], manifest)
        except BaseException:
            db.close()
            raise
        self.manifest, self._db, self.rasters = manifest, db, rasters
        self._db_lock = threading.Lock()  # a shared reader may serve searches from several threads

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "IndexReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def size(self) -> int:
        return int(self.faiss_index.ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and tile ids of the k nearest tiles (inner product of unit vectors = cosine)."""
        k = min(k, self.size)
        scores, ids = self.faiss_index.search(np.ascontiguousarray(query.reshape(1, -1), np.float32), k)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored (n, D) float32 embeddings of the given tile ids."""
        return np.stack([self.faiss_index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros(
            (0, self.faiss_index.d), np.float32)

    def iter_tiles(self, batch: int = 65536) -> Iterator[tuple[list[TileEntry], np.ndarray]]:
        """Every live tile with its embedding, in id order, `batch` tiles at a time."""
        for start in range(0, self.size, batch):
            ids = list(range(start, min(self.size, start + batch)))
            yield self.tiles(ids), self.vectors(ids)

    def tiles(self, ids: list[int]) -> list[TileEntry]:
        """Catalog entries of the given tile ids, in the same order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        try:
            with self._db_lock:
                rows = {row[0]: row for row in self._db.execute(
                    f"SELECT id, raster_id, col, row, width, height, xmin, ymin, xmax, ymax, "
                    f"lon_min, lat_min, lon_max, lat_max FROM tiles WHERE id IN ({marks})",
                    [int(i) for i in ids])}
            return [TileEntry(id=row[0], raster=self.rasters[row[1]], window=tuple(row[2:6]),
                              bounds=tuple(row[6:10]), bounds_4326=tuple(row[10:14]))
                    for row in (rows[int(i)] for i in ids)]
        except (sqlite3.DatabaseError, KeyError) as exc:
            raise catalog_error(self.index_dir / self.manifest["catalog"], exc) from exc


_READERS: "OrderedDict[tuple[str, int, int], IndexReader]" = OrderedDict()
_READERS_LOCK = threading.Lock()
_READERS_KEPT = 2


def shared_reader(index_dir: str | Path) -> IndexReader:
    """An open reader of the index's live generation, kept for the next query.

    Loading a large FAISS file takes seconds; a user drawing box after box should pay it once. The
    key holds the manifest's identity, so a rebuilt index (a new manifest) is opened afresh.
    """
    index_dir = Path(index_dir).expanduser().resolve()
    require_manifest(index_dir)
    stat = (index_dir / MANIFEST).stat()
    key = (str(index_dir), stat.st_ino, stat.st_mtime_ns)
    with _READERS_LOCK:
        if key in _READERS:
            _READERS.move_to_end(key)
            return _READERS[key]
        reader = IndexReader(index_dir)
        _READERS[key] = reader
        while len(_READERS) > _READERS_KEPT:
            # Dropped, not closed: a search in another thread may still hold it; it closes when freed.
            _READERS.popitem(last=False)
        return reader


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

    def describe(self) -> str:
        model = self.model
        lines = [f"index {self.index_dir} (generation {self.generation}, built {self.built_at})",
                 f"model: {model['name']} ({model['embedding_dim']}-d, {model.get('input_size', '?')} px, "
                 f"sha256 {model['sha256'][:12]}, {model.get('path', '?')})",
                 f"{self.tile_count} tiles from {len(self.rasters)} raster(s), {self.index_kind} search, "
                 f"{self.size_bytes / 1e6:.1f} MB on disk"]
        lines += [f"  {tiles:8d}  {path}" for path, tiles in self.rasters]
        return "\n".join(lines)


def read_index_info(index_dir: str | Path) -> IndexInfo:
    index_dir = Path(index_dir)
    manifest = require_manifest(index_dir)
    connection = open_catalog(index_dir, manifest)
    try:
        rasters = tuple(connection.execute("SELECT path, tile_count FROM rasters ORDER BY path"))
    except sqlite3.DatabaseError as exc:
        raise catalog_error(index_dir / manifest["catalog"], exc) from exc
    finally:
        connection.close()
    size = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    return IndexInfo(index_dir=str(index_dir), rasters=rasters, tile_count=manifest["tile_count"],
                     model=manifest["model"], index_kind=manifest["index_kind"], size_bytes=size,
                     generation=manifest["generation"], built_at=manifest["built_at"])
