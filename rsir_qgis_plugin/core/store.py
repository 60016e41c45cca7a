"""The index directory: manifest (the commit point), writer lock, shards, catalog and vectors.

    INDEX_DIR/manifest.json          replaced atomically; names the live generation's files
    INDEX_DIR/catalog-<gen>.sqlite   rasters and tiles (tile id = FAISS id)
    INDEX_DIR/vectors-<gen>.faiss    the FAISS index (exact IndexFlatIP, or IndexIVFFlat)
    INDEX_DIR/shards/<key>.npz       one raster's embeddings and tile geometry (the unit of resume)
    INDEX_DIR/.lock                  held by the one writer
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, fsync_dir, is_temporary, write_bytes_atomic
from .errors import IndexLockedError, IndexStoreError, MissingDependencyError, ModelMismatchError
from .model import ModelInfo

FORMAT = "rsir-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
APPROXIMATE_THRESHOLD = 250_000  # above this many vectors an exact search takes > ~70 ms on 2 cores
# Approximate search is IVF: every build rebuilds the vector index from the shards, and on 2 cores
# IVF builds about 20x faster than HNSW (10^5 x 512: 10 s against 220 s) at similar query latency.
IVF_MAX_LISTS = 4096
IVF_TRAIN_PER_LIST = 64  # k-means training points per list (FAISS warns below 39)
IVF_NPROBE = 32


def faiss_module():
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(["faiss-cpu"], f"import failed: {exc}; pip install faiss-cpu") from exc
    return faiss


# ---------------------------------------------------------------- shards

@dataclass
class Shard:
    """One raster's embeddings with the geometry of each tile and the raster's record."""

    vectors: np.ndarray  # (n, D) float32, unit length
    windows: np.ndarray  # (n, 4) int64: col, row, width, height
    bounds: np.ndarray  # (n, 4) float64 in the raster CRS: xmin, ymin, xmax, ymax
    bounds_4326: np.ndarray  # (n, 4) float64: lon_min, lat_min, lon_max, lat_max (NaN without CRS)
    record: dict  # the raster: fingerprint, size, CRS, transform, bands, stretch, tiling, counts

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, vectors=self.vectors, windows=self.windows, bounds=self.bounds,
                         bounds_4326=self.bounds_4326, record=np.array(json.dumps(self.record)))

    @classmethod
    def load(cls, path: Path) -> "Shard":
        with np.load(path, allow_pickle=False) as data:
            return cls(vectors=data["vectors"], windows=data["windows"], bounds=data["bounds"],
                       bounds_4326=data["bounds_4326"], record=json.loads(str(data["record"])))


# ---------------------------------------------------------------- lock

class WriterLock:
    """An exclusive, non-blocking lock on the index directory; the OS drops it if the writer dies."""

    def __init__(self, index_dir: Path):
        self.path = Path(index_dir) / ".lock"
        self._handle = None

    def __enter__(self) -> "WriterLock":
        self._handle = open(self.path, "a+")
        try:
            _lock_file(self._handle)
        except OSError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "unknown"
            self._handle.close()
            raise IndexLockedError(f"{self.path.parent}: another process (pid {holder}) is writing this "
                                   "index; wait for it to finish or cancel it") from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        _unlock_file(self._handle)
        self._handle.close()


if os.name == "nt":
    import msvcrt

    def _lock_file(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_file(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock_file(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------- manifest

def read_manifest(index_dir: Path) -> dict | None:
    """The live manifest, or None for a directory that holds no index yet."""
    path = Path(index_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"{path}: unreadable index manifest ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise IndexStoreError(f"{path}: not an rsir index manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise IndexStoreError(f"{path}: index format {manifest['format_version']} is newer than this rsir "
                              f"reads ({FORMAT_VERSION}); update rsir")
    return manifest


def require_manifest(index_dir: Path) -> dict:
    """The live manifest; an error a user can act on where there is no index."""
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexStoreError(f"{index_dir}: no rsir index here (no {MANIFEST}); build one first")
    return manifest


def open_catalog(index_dir: Path, manifest: dict, **options) -> sqlite3.Connection:
    """The live generation's catalog, read-only."""
    catalog = Path(index_dir) / manifest["catalog"]
    return sqlite3.connect(f"{catalog.as_uri()}?mode=ro", uri=True, **options)


def check_model(manifest: dict, model: ModelInfo, index_dir: Path) -> None:
    """Refuse to mix embeddings of two models in one index."""
    built_with = manifest["model"]
    if built_with["sha256"] != model.sha256:
        raise ModelMismatchError(
            f"{index_dir}: this index was built with model '{built_with['name']}' "
            f"({built_with.get('path', '?')}, sha256 {built_with['sha256'][:12]}); the model given is "
            f"'{model.contract.name}' ({model.path}, sha256 {model.sha256[:12]}). "
            "Use the same model, or another index directory.")


# ---------------------------------------------------------------- writing a generation

def choose_kind(n_vectors: int, approximate: bool | None) -> str:
    if approximate is None:
        approximate = n_vectors > APPROXIMATE_THRESHOLD
    return "ivf" if approximate else "flat"


def ivf_lists(n_vectors: int) -> int:
    """About 4 sqrt(n) inverted lists, each with enough points to train its centroid."""
    return int(max(1, min(IVF_MAX_LISTS, 4 * np.sqrt(n_vectors), n_vectors // 39)))


def make_faiss_index(vectors: np.ndarray, kind: str):
    faiss = faiss_module()
    dim = vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "ivf":
        lists = ivf_lists(len(vectors))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).permutation(len(vectors))[:lists * IVF_TRAIN_PER_LIST]
        index.train(vectors[np.sort(sample)])
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(vectors)
    return index


CATALOG_SCHEMA = """
CREATE TABLE rasters (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, size INTEGER, mtime_ns INTEGER,
    crs_wkt TEXT, width INTEGER, height INTEGER, transform TEXT, bands TEXT, stretch TEXT, tiling TEXT,
    tile_px INTEGER, stride_px INTEGER, shard TEXT, tile_count INTEGER, skipped INTEGER);
CREATE TABLE tiles (id INTEGER PRIMARY KEY, raster_id INTEGER NOT NULL REFERENCES rasters(id),
    col INTEGER, row INTEGER, width INTEGER, height INTEGER,
    xmin REAL, ymin REAL, xmax REAL, ymax REAL, lon_min REAL, lat_min REAL, lon_max REAL, lat_max REAL);
CREATE INDEX tiles_raster ON tiles(raster_id);
"""


def write_generation(index_dir: Path, shards: dict[str, Shard], model: ModelInfo,
                     approximate: bool | None, previous: dict | None) -> dict:
    """Write catalog and vectors of a new generation, then switch the manifest to it (the commit)."""
    index_dir = Path(index_dir)
    generation = (previous["generation"] + 1) if previous else 1
    ordered = sorted(shards.items(), key=lambda item: item[1].record["path"])
    dim = model.contract.embedding_dim
    vectors = (np.concatenate([s.vectors for _, s in ordered]) if ordered else np.zeros((0, dim), np.float32))
    kind = choose_kind(len(vectors), approximate)

    catalog_name, vectors_name = f"catalog-{generation}.sqlite", f"vectors-{generation}.faiss"
    with atomic_path(index_dir / catalog_name) as tmp:
        tmp.unlink()
        _write_catalog(tmp, ordered)
    faiss = faiss_module()
    write_bytes_atomic(index_dir / vectors_name, faiss.serialize_index(make_faiss_index(vectors, kind)).tobytes())

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "generation": generation,
        "catalog": catalog_name, "vectors": vectors_name, "index_kind": kind,
        "model": {**model.identity, "path": str(model.path)},
        "tile_count": int(len(vectors)), "raster_count": len(ordered),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_bytes_atomic(index_dir / MANIFEST, json.dumps(manifest, indent=2).encode())
    _remove_stale_files(index_dir, manifest, set(shards))
    return manifest


def _write_catalog(path: Path, ordered: list[tuple[str, Shard]]) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.executescript(CATALOG_SCHEMA)
        next_tile = 0
        for raster_id, (key, shard) in enumerate(ordered, start=1):
            r = shard.record
            connection.execute(
                "INSERT INTO rasters VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (raster_id, r["path"], r["size"], r["mtime_ns"], r["crs_wkt"], r["width"], r["height"],
                 json.dumps(r["transform"]), json.dumps(r["bands"]), json.dumps(r["stretch"]),
                 json.dumps(r["tiling"]), r["tile_px"], r["stride_px"], key, len(shard.vectors),
                 r["skipped"]))
            n = len(shard.vectors)
            rows = zip(range(next_tile, next_tile + n), [raster_id] * n, *shard.windows.T.tolist(),
                       *shard.bounds.T.tolist(), *shard.bounds_4326.T.tolist())
            connection.executemany("INSERT INTO tiles VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            next_tile += n
        connection.commit()
    finally:
        connection.close()


def _remove_stale_files(index_dir: Path, manifest: dict, live_shards: set[str]) -> None:
    """After a commit: older generations, shards no raster uses, temporary files of killed writers."""
    live = {manifest["catalog"], manifest["vectors"], MANIFEST, ".lock"}
    for path in index_dir.iterdir():
        if path.is_file() and path.name not in live and (
                path.name.startswith(("catalog-", "vectors-")) or is_temporary(path)):
            _remove_if_possible(path)
    shard_dir = index_dir / "shards"
    if shard_dir.is_dir():
        for path in shard_dir.iterdir():
            if path.stem not in live_shards or is_temporary(path):
                _remove_if_possible(path)
    fsync_dir(index_dir)


def _remove_if_possible(path: Path) -> None:
    """Windows refuses to delete a file a reader still has open (a search of the previous generation):
    the commit is already done, so the file is left for the next build to remove."""
    try:
        path.unlink(missing_ok=True)
    except PermissionError:
        pass


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class RasterEntry:
    id: int
    path: str
    size: int
    mtime_ns: int
    crs_wkt: str
    width: int
    height: int
    transform: tuple[float, ...]
    bands: tuple[int, ...]  # fed to the model
    stretch: tuple[tuple[float, float], ...] | None  # per band; None for uint8
    tiling: dict
    shard: str
    tile_count: int
    skipped: int


@dataclass(frozen=True)
class TileEntry:
    id: int
    raster: RasterEntry
    window: tuple[int, int, int, int]
    bounds: tuple[float, float, float, float]
    bounds_4326: tuple[float, float, float, float]


class IndexReader:
    """The live generation of an index, opened read-only for searching."""

    def __init__(self, index_dir: str | Path):
        self.index_dir = Path(index_dir)
        manifest = require_manifest(self.index_dir)
        self.manifest = manifest
        catalog = self.index_dir / manifest["catalog"]
        vectors = self.index_dir / manifest["vectors"]
        for path in (catalog, vectors):
            if not path.is_file():
                raise IndexStoreError(f"{path}: missing; the index is damaged, rebuild it")
        faiss = faiss_module()
        try:
            self.faiss_index = faiss.read_index(str(vectors))
        except RuntimeError as exc:
            raise IndexStoreError(f"{vectors}: unreadable FAISS index ({exc}); rebuild the index") from exc
        if isinstance(self.faiss_index, faiss.IndexIVF):
            self.faiss_index.nprobe = min(IVF_NPROBE, self.faiss_index.nlist)
        self._db = open_catalog(self.index_dir, manifest, check_same_thread=False)
        self._db_lock = threading.Lock()  # a shared reader may serve searches from several threads
        self.rasters = {row[0]: _raster_entry(row) for row in self._db.execute(
            "SELECT id, path, size, mtime_ns, crs_wkt, width, height, transform, bands, stretch, tiling, "
            "shard, tile_count, skipped FROM rasters")}

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

    def tiles(self, ids: list[int]) -> list[TileEntry]:
        """Catalog entries of the given tile ids, in the same order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._db_lock:
            rows = {row[0]: row for row in self._db.execute(
                f"SELECT id, raster_id, col, row, width, height, xmin, ymin, xmax, ymax, "
                f"lon_min, lat_min, lon_max, lat_max FROM tiles WHERE id IN ({marks})", [int(i) for i in ids])}
        return [TileEntry(id=row[0], raster=self.rasters[row[1]], window=tuple(row[2:6]),
                          bounds=tuple(row[6:10]), bounds_4326=tuple(row[10:14]))
                for row in (rows[int(i)] for i in ids)]


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


def _raster_entry(row) -> RasterEntry:
    stretch = json.loads(row[9])
    return RasterEntry(id=row[0], path=row[1], size=row[2], mtime_ns=row[3], crs_wkt=row[4], width=row[5],
                       height=row[6], transform=tuple(json.loads(row[7])), bands=tuple(json.loads(row[8])),
                       stretch=tuple(tuple(s) for s in stretch) if stretch else None,
                       tiling=json.loads(row[10]), shard=row[11], tile_count=row[12], skipped=row[13])


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
        lines = [f"index {self.index_dir} (generation {self.generation}, built {self.built_at})",
                 f"model: {self.model['name']} ({self.model['embedding_dim']}-d, {self.model['input_size']} px, "
                 f"sha256 {self.model['sha256'][:12]}, {self.model.get('path', '?')})",
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
        raise IndexStoreError(f"{index_dir / manifest['catalog']}: unreadable catalog ({exc}); "
                              "rebuild the index") from exc
    finally:
        connection.close()
    size = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    return IndexInfo(index_dir=str(index_dir), rasters=rasters, tile_count=manifest["tile_count"],
                     model=manifest["model"], index_kind=manifest["index_kind"], size_bytes=size,
                     generation=manifest["generation"], built_at=manifest["built_at"])
