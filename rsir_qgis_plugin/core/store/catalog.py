"""The catalog: an SQLite file per segment with the rasters and tiles it holds.

    INDEX_DIR/segments/<name>/catalog.sqlite

Tile ids are index-wide: a segment's FAISS id i is tile id `base + i`.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..errors import IndexStoreError
from ..safe_json import check_record, is_int, is_number, list_of, loads, optional
from .integrity import raster_row_check, seed_of, tile_row_checks
from .shards import Shard, tiling_problems

COLUMN_MAX_BYTES = 1 << 20  # a transform, band list, stretch or tiling record is a few hundred bytes

CATALOG_SCHEMA = """
CREATE TABLE rasters (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, size INTEGER, mtime_ns INTEGER,
    crs_wkt TEXT, width INTEGER, height INTEGER, transform TEXT, bands TEXT, stretch TEXT, tiling TEXT,
    tile_px INTEGER, stride_px INTEGER, shard TEXT, tile_count INTEGER, skipped INTEGER, first_tile INTEGER,
    row_check TEXT);
CREATE TABLE tiles (id INTEGER PRIMARY KEY, raster_id INTEGER NOT NULL REFERENCES rasters(id),
    col INTEGER, row INTEGER, width INTEGER, height INTEGER,
    xmin REAL, ymin REAL, xmax REAL, ymax REAL, lon_min REAL, lat_min REAL, lon_max REAL, lat_max REAL,
    row_check INTEGER);
CREATE INDEX tiles_raster ON tiles(raster_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# The identity stamp and the row checks are core/store/integrity.py's: catalogs of earlier rsir have neither.
RASTER_COLUMNS = ("id, path, size, mtime_ns, crs_wkt, width, height, transform, bands, stretch, tiling, "
                  "shard, tile_count, skipped")


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


def write_catalog(path: Path, ordered: list[tuple[str, Shard]], first_tile: int = 0, first_raster: int = 1,
                  meta: dict | None = None) -> None:
    """A new catalog at `path` (which must not exist) from shards in FAISS order.

    Tile and raster ids are index-wide: a segment's ids start where the previous segment's ended.
    `meta` is the segment's identity stamp (uid, base, tiles, first_raster, rasters); rows get check
    values seeded by its uid.
    """
    meta = {key: str(value) for key, value in (meta or {}).items()}
    seed = seed_of(meta.get("uid", ""))
    connection = sqlite3.connect(path)
    try:
        connection.executescript(CATALOG_SCHEMA)
        connection.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
        next_tile = first_tile
        for raster_id, (key, shard) in enumerate(ordered, start=first_raster):
            r = shard.record
            connection.execute(
                "INSERT INTO rasters VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
                (raster_id, r["path"], r["size"], r["mtime_ns"], r["crs_wkt"], r["width"], r["height"],
                 json.dumps(r["transform"]), json.dumps(r["bands"]), json.dumps(r["stretch"]),
                 json.dumps(r["tiling"]), r["tile_px"], r["stride_px"], key, len(shard.vectors),
                 r["skipped"], next_tile))
            n = len(shard.vectors)
            ids = range(next_tile, next_tile + n)
            checks = tile_row_checks(seed, ids, [raster_id] * n, shard.windows, shard.bounds,
                                     shard.bounds_4326)
            rows = zip(ids, [raster_id] * n, *shard.windows.T.tolist(), *shard.bounds.T.tolist(),
                       *shard.bounds_4326.T.tolist(), checks.tolist())
            connection.executemany("INSERT INTO tiles VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            next_tile += n
        # Raster checks from the rows as SQLite gives them back, which is what a reader will hash.
        for row in connection.execute("SELECT * FROM rasters").fetchall():
            connection.execute("UPDATE rasters SET row_check = ? WHERE id = ?",
                               (raster_row_check(meta.get("uid", ""), row[:-1]), row[0]))
        connection.commit()
    finally:
        connection.close()


def open_catalog(path: Path, **options) -> sqlite3.Connection:
    """A catalog file, read-only, checked to be a catalog."""
    path = Path(path)
    if not path.is_file():
        raise IndexStoreError(f"{path}: missing; the index is damaged, run `index build` to rebuild it")
    connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, **options)
    try:
        connection.execute("SELECT count(*) FROM rasters").fetchone()
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise catalog_error(path, exc) from exc
    return connection


def catalog_error(path: Path, exc: Exception) -> IndexStoreError:
    return IndexStoreError(f"{path}: unreadable catalog ({exc}); run `index build` to rebuild it")


def read_rasters(connection: sqlite3.Connection, path: Path) -> dict[int, RasterEntry]:
    try:
        return {row[0]: raster_entry(row)
                for row in connection.execute(f"SELECT {RASTER_COLUMNS} FROM rasters")}
    except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
        raise catalog_error(path, exc) from exc


def tile_count(connection: sqlite3.Connection, path: Path) -> int:
    try:
        return int(connection.execute("SELECT count(*) FROM tiles").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise catalog_error(path, exc) from exc


_COLUMN_CHECKS = {"transform": list_of(is_number), "bands": list_of(is_int),
                  "stretch": optional(list_of(list_of(is_number, 2))),
                  "tiling": lambda value: isinstance(value, dict)}


def parse_column(name: str, text) -> object:
    """A JSON column of the rasters table, parsed with limits and checked; ValueError says what is wrong."""
    value = loads(text if isinstance(text, (str, bytes)) else "", max_bytes=COLUMN_MAX_BYTES)
    problems = check_record({name: value}, {name: _COLUMN_CHECKS[name]})
    if not problems and name == "tiling":
        problems = tiling_problems(value)
    if problems:
        raise ValueError(f"column {problems[0]}")
    return value


def raster_entry(row) -> RasterEntry:
    stretch = parse_column("stretch", row[9])
    return RasterEntry(id=row[0], path=row[1], size=row[2], mtime_ns=row[3], crs_wkt=row[4], width=row[5],
                       height=row[6], transform=tuple(parse_column("transform", row[7])),
                       bands=tuple(parse_column("bands", row[8])),
                       stretch=tuple(tuple(s) for s in stretch) if stretch else None,
                       tiling=parse_column("tiling", row[10]), shard=row[11], tile_count=row[12],
                       skipped=row[13])


def raster_tile_ranges(connection: sqlite3.Connection, path: Path) -> dict[int, tuple[int, int]]:
    """raster id -> (first tile id, tile count): a raster's tiles are consecutive ids."""
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(rasters)")}
        if "first_tile" in columns:
            query = "SELECT id, first_tile, tile_count FROM rasters"
        else:  # catalogs of rsir before segments
            query = "SELECT raster_id, min(id), count(*) FROM tiles GROUP BY raster_id"
        ranges = {row[0]: (row[1], row[2]) for row in connection.execute(query)}
        return {raster: (first if first is not None else 0, count) for raster, (first, count) in ranges.items()}
    except sqlite3.DatabaseError as exc:
        raise catalog_error(path, exc) from exc
