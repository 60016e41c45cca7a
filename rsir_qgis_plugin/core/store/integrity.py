"""Cheap checks that tie a segment's files to the manifest, done every time an index is opened, and the
checks of catalog rows and scores done on every query. Checksums of whole files are the build's job
(segments.verify_segment); these cost kilobytes of reading, not the files.

- identity stamps: a segment's manifest record carries a random `uid` that its catalog also holds (table
  `meta`, with the segment's base, tiles, rasters and model), and digests of a sample of its vector files
  (`vectors_sample`, `f16_sample`: head, tail and 16 spaced blocks): a catalog or vectors file of another
  index, or of another segment, is refused at open even when it has the same size;
- the manifest's numbers agree with each other (segment id ranges, tombstones, counts, next ids), and
  tombstones with the replaced rasters' tiles that the catalog lists;
- each catalog row carries a check value (`row_check`: rasters a digest of the row, tiles a 64-bit hash of
  the row seeded by the uid), verified for rasters at open and for tiles on every hit;
- search refuses a score outside [-1, 1] (a damaged vector) and a FAISS id outside the segment.
Catalogs and manifests of earlier rsir have no stamps: they get the count and range checks only.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np

from ..errors import IndexStoreError
from .manifest import MANIFEST

SAMPLE_END = 64 << 10  # bytes hashed at each end of a vectors file (the FAISS header; the last vectors)
SAMPLE_BLOCKS, SAMPLE_BLOCK = 16, 4096  # blocks hashed in between
SCORE_SLACK = 1e-3  # float32 (and float16 re-ranking) rounding of a cosine of unit vectors
REBUILD = "run `index build` to rebuild it from its shards"
META_KEYS = ("uid", "base", "tiles", "first_raster", "rasters")


def file_sample(path: Path) -> str:
    """A digest of a file's size, head, tail and 16 spaced blocks: what opening can afford to read."""
    size = Path(path).stat().st_size
    digest = hashlib.sha256(str(size).encode())
    spans = [(0, SAMPLE_END), (max(0, size - SAMPLE_END), SAMPLE_END),
             *((size * i // (SAMPLE_BLOCKS + 1), SAMPLE_BLOCK) for i in range(1, SAMPLE_BLOCKS + 1))]
    with open(path, "rb") as handle:
        for offset, length in spans:
            handle.seek(offset)
            digest.update(handle.read(length))
    return digest.hexdigest()


# --- catalog rows ---------------------------------------------------------------------------------------

_MIX = np.uint64(0x9E3779B97F4A7C15)
_MUL1, _MUL2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NAN = np.uint64(0x7FF8000000000000)


def _float_words(values: np.ndarray) -> np.ndarray:
    """float64 values as uint64 words, as SQLite gives them back (NaN is stored as NULL, -0.0 as 0)."""
    values = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 + 0.0 is +0.0
    words = values.view(np.uint64).copy()
    words[np.isnan(values)] = _NAN
    return words


def tile_row_checks(seed: int, ids, raster_ids, windows, bounds, bounds_4326) -> np.ndarray:
    """A 64-bit hash (splitmix64 rounds) of each tile row, as SQLite's signed integers; vectorised."""
    columns = [np.asarray(ids, np.int64).view(np.uint64), np.asarray(raster_ids, np.int64).view(np.uint64),
               *np.asarray(windows, np.int64).reshape(-1, 4).view(np.uint64).T,
               *_float_words(np.asarray(bounds, np.float64).reshape(-1, 4)).T,
               *_float_words(np.asarray(bounds_4326, np.float64).reshape(-1, 4)).T]
    h = np.full(len(columns[0]), np.uint64(seed & 0xFFFFFFFFFFFFFFFF), np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            h = (h ^ column) + _MIX
            h = (h ^ (h >> np.uint64(30))) * _MUL1
            h = (h ^ (h >> np.uint64(27))) * _MUL2
            h ^= h >> np.uint64(31)
    return h.view(np.int64)


def seed_of(uid: str) -> int:
    return int(hashlib.sha256(uid.encode()).hexdigest()[:16], 16)


def raster_row_check(uid: str, row: tuple) -> str:
    """A digest of a raster row (every column but the check itself), tied to the segment's uid."""
    return hashlib.sha256(json.dumps([uid, *row]).encode()).hexdigest()[:32]


def verify_tile_rows(catalog: Path, seed: int, rows: list[tuple]) -> None:
    """Rows (id, raster_id, col, row, w, h, 8 bounds, row_check) must match their check values."""
    if not rows:
        return
    table = np.array([[np.nan if v is None else v for v in row[2:14]] for row in rows], dtype=np.float64)
    expected = tile_row_checks(seed, [r[0] for r in rows], [r[1] for r in rows],
                               table[:, :4].astype(np.int64), table[:, 4:8], table[:, 8:12])
    stored = np.array([r[14] if isinstance(r[14], int) else 0 for r in rows], dtype=np.int64)
    wrong = np.flatnonzero(expected != stored)
    if len(wrong):
        raise IndexStoreError(f"{catalog}: tile {rows[wrong[0]][0]}'s row does not match its check value "
                              f"(the catalog was edited or damaged); {REBUILD}")


# --- at open --------------------------------------------------------------------------------------------

def manifest_problems(manifest: dict) -> list[str]:
    """What is inconsistent among a manifest's own numbers (no file read): a flipped digit shows here."""
    problems: list[str] = []
    tile_end = raster_end = 0
    for number, s in enumerate(manifest["segments"]):
        where = f"segments[{number}]"
        overlaps = s["base"] < tile_end or s["first_raster"] < max(raster_end, 1)
        if overlaps or min(s["tiles"], s["rasters"]) < 0:
            problems.append(f"{where} ids overlap the segment before or are negative")
        tile_end, raster_end = s["base"] + s["tiles"], s["first_raster"] + s["rasters"]
        ranges = s["dead_ranges"]
        inside = all(s["base"] <= a < b <= tile_end for a, b in ranges)
        ordered = all(ranges[i][1] <= ranges[i + 1][0] for i in range(len(ranges) - 1))
        if not (inside and ordered) or s["dead_tiles"] != sum(b - a for a, b in ranges):
            problems.append(f"{where} tombstones {_short(ranges)} do not fit its tiles or its dead_tiles")
        dead = s["dead_rasters"]
        if len(set(dead)) != len(dead) or not all(s["first_raster"] <= r < raster_end for r in dead):
            problems.append(f"{where} dead rasters {_short(dead)} are not rasters of the segment")
    if tile_end > manifest["next_tile"] or raster_end > manifest["next_raster"]:
        problems.append("next tile or raster id lies inside a segment")
    segments = manifest["segments"]
    if manifest["raster_count"] != sum(s["rasters"] - len(s["dead_rasters"]) for s in segments):
        problems.append(f"raster_count {manifest['raster_count']} is not what the segments hold")
    return problems


def check_manifest(index_dir: Path, manifest: dict) -> None:
    problems = manifest_problems(manifest)
    if problems:
        raise damaged_manifest(index_dir, "; ".join(problems))


def damaged_manifest(index_dir: Path, problem: str) -> IndexStoreError:
    return IndexStoreError(f"{Path(index_dir) / MANIFEST}: damaged index manifest ({problem}); {REBUILD}")


def read_meta(db: sqlite3.Connection) -> dict[str, str] | None:
    """The catalog's identity stamp, or None for a catalog of rsir before stamps."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
        return None
    return dict(db.execute("SELECT key, value FROM meta").fetchall())


def check_catalog(index_dir: Path, segment: dict, db: sqlite3.Connection, catalog: Path) -> dict | None:
    """The catalog is the one the manifest names (stamp, id ranges, raster rows) and tombstones fit it.

    Returns the catalog's stamp (None for catalogs of earlier rsir): its uid seeds the tile row checks.
    """
    meta = read_meta(db)
    if segment.get("uid"):  # manifests of earlier rsir record none: nothing to compare with
        recorded = {key: str(segment.get(key)) for key in META_KEYS}
        found = {key: (meta or {}).get(key) for key in META_KEYS}
        if found != recorded:
            differ = [f"{key} {found[key]} (manifest: {recorded[key]})" for key in META_KEYS
                      if found[key] != recorded[key]]
            raise IndexStoreError(f"{catalog}: not the catalog the manifest names for {segment['name']} "
                                  f"({', '.join(differ[:3])}); the index is damaged, {REBUILD}")
    # Two subqueries: SQLite reads min() or max() of the key from the b-tree's ends only when each stands
    # alone; "SELECT min(id), max(id)" scans every row (1 s a 10^7-tile segment at each open).
    low, high = db.execute("SELECT (SELECT min(id) FROM tiles), (SELECT max(id) FROM tiles)").fetchone()
    if segment["tiles"] and (low, high) != (segment["base"], segment["base"] + segment["tiles"] - 1):
        raise IndexStoreError(f"{catalog}: tile ids {low}-{high} where the manifest records "
                              f"{segment['base']}-{segment['base'] + segment['tiles'] - 1}; the index is "
                              f"damaged, {REBUILD}")
    columns = {row[1] for row in db.execute("PRAGMA table_info(rasters)")}
    if "first_tile" not in columns:
        return meta  # a catalog of rsir before segments: no tombstones
    rows = db.execute("SELECT * FROM rasters ORDER BY id").fetchall()
    names = [row[1] for row in db.execute("PRAGMA table_info(rasters)")]
    if rows and rows[0][0] != segment["first_raster"]:
        raise IndexStoreError(f"{catalog}: raster ids start at {rows[0][0]} where the manifest records "
                              f"{segment['first_raster']}; the index is damaged, {REBUILD}")
    if "row_check" in names and meta is not None:
        at = names.index("row_check")
        for row in rows:
            if row[at] != raster_row_check(meta["uid"], row[:at] + row[at + 1:]):
                raise IndexStoreError(f"{catalog}: raster {row[0]}'s row does not match its check value (the "
                                      f"catalog was edited or damaged); {REBUILD}")
    first, count = names.index("first_tile"), names.index("tile_count")
    by_id = {row[0]: (row[first], row[count]) for row in rows}
    dead = sorted([by_id[r][0], by_id[r][0] + by_id[r][1]] for r in segment["dead_rasters"]
                  if r in by_id and by_id[r][1])
    if dead != sorted(segment["dead_ranges"]) or any(r not in by_id for r in segment["dead_rasters"]):
        raise damaged_manifest(index_dir, f"{segment['name']}'s tombstones {_short(segment['dead_ranges'])} "
                                          f"are not the tiles of its replaced rasters {_short(dead)}")
    return meta


def check_sample(path: Path, recorded: str | None) -> None:
    if recorded and file_sample(path) != recorded:
        raise IndexStoreError(f"{path}: not the vectors file the manifest names (same size, other contents: "
                              f"swapped or damaged); {REBUILD}")


# --- at query time --------------------------------------------------------------------------------------

def check_scores(vectors: Path, queries: np.ndarray, scores: np.ndarray, local: np.ndarray,
                 count: int) -> None:
    """Candidates must be tiles of the segment with a cosine in [-1, 1]: anything else is a damaged file."""
    found = local >= 0
    if (local[found] >= count).any():
        raise IndexStoreError(f"{vectors}: returned tile {int(local[found].max())} of a {count}-tile "
                              f"segment; the vectors file is damaged, {REBUILD}")
    bound = np.linalg.norm(queries, axis=1, keepdims=True) * (1 + SCORE_SLACK) + SCORE_SLACK
    bad = found & ~(np.abs(scores) <= bound)  # NaN is bad too
    if bad.any():
        raise IndexStoreError(f"{vectors}: a stored vector gives a cosine of {float(scores[bad][0]):.3g}, "
                              f"outside [-1, 1]: the vectors file is damaged; {REBUILD}")


def check_norms(vectors: Path, stored: np.ndarray) -> None:
    """Stored vectors are unit length; one that is not was damaged after it was written."""
    norms = np.linalg.norm(stored.astype(np.float64), axis=1) if len(stored) else np.ones(0)
    wrong = ~(np.abs(norms - 1) <= 1e-2)  # NaN is wrong too
    if wrong.any():
        raise IndexStoreError(f"{vectors}: holds a vector of length {float(norms[wrong][0]):.3g} where every "
                              f"one is 1: the vectors file is damaged; {REBUILD}")


def _short(values: list) -> str:
    text = json.dumps(values)
    return text if len(text) <= 60 else text[:57] + "..."
