"""An index's tiles and embeddings as one GeoParquet 1.1 file, for DuckDB, GeoPandas, GDAL and the like.

One row per live tile, in tile-id order:

    tile_id int64 | raster string | col, row, width, height int32 (pixel window)
    embedding fixed_size_list<float32>[D] | bbox struct<xmin, ymin, xmax, ymax> | geometry WKB Polygon

The geometry is the tile's four pixel corners reprojected to longitude/latitude (WGS 84), as a
counter-clockwise ring. The GeoParquet `crs` is omitted, which the specification defines as
OGC:CRS84 (longitude, latitude on WGS 84). A tile that has no place on the ground (its raster has no
CRS, or a corner does not reproject) keeps its row and embedding with a null geometry and bbox.
Longitudes are unwrapped within a tile, so a tile across the antimeridian stays one polygon (some of
its longitudes then lie beyond 180).

File metadata: `geo` (the GeoParquet metadata, with the bbox of all tiles and the `bbox` covering
column) and `rsir` (the model's identity from the index manifest, and the index generation).
The file is written in row groups of `batch` tiles, so memory use does not grow with the index, and
atomically: an interrupted export leaves no file, or the previous one, at the path.
"""
from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_output, output_target
from .errors import Cancelled, MissingDependencyError, RsirError
from .geometry import crs_from, lonlat_points, reaches_lonlat

GEOPARQUET_VERSION = "1.1.0"
# Tiles per row group and per catalog read; kept under SQLite's default limit of 32766 bound
# variables, which other platforms' sqlite3 builds keep (Debian's allows 250000).
BATCH = 16384
# One WKB polygon: byte order, type, ring count, point count, then 5 closed-ring points (x, y).
WKB_POLYGON = np.dtype([("order", "u1"), ("type", "<u4"), ("rings", "<u4"), ("points", "<u4"),
                        ("xy", "<f8", (10,))])
WKB_LITTLE_ENDIAN, WKB_TYPE_POLYGON = 1, 3
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class ExportSummary:
    path: str
    tiles: int
    embedding_dim: int
    rasters_without_crs: tuple[tuple[str, int], ...]  # (path, tiles): exported with a null geometry
    unplaced: int  # tiles of rasters with a CRS whose corners do not reproject: null geometry too
    size_bytes: int
    seconds: float

    @property
    def without_geometry(self) -> int:
        return self.unplaced + sum(tiles for _, tiles in self.rasters_without_crs)

    def describe(self) -> str:
        rate = self.tiles / self.seconds if self.seconds > 0 else float("inf")
        return (f"exported {self.tiles} tiles ({self.embedding_dim}-d embeddings) to {self.path}: "
                f"{self.size_bytes / 1e6:.1f} MB in {self.seconds:.1f} s ({rate:,.0f} tiles/s)"
                + (f", {self.without_geometry} of them without geometry" if self.without_geometry else ""))

    def warnings(self) -> list[str]:
        """One line per raster without a CRS, and one for tiles whose corners did not reproject."""
        lines = [f"{path}: has no CRS; its {tiles} tile(s) are exported with a null geometry"
                 for path, tiles in self.rasters_without_crs]
        if self.unplaced:
            lines.append(f"{self.unplaced} tile(s) have corners that do not reproject to longitude/latitude; "
                         "they are exported with a null geometry")
        return lines


def load_pyarrow():
    """pyarrow and pyarrow.parquet, or one line naming the package to install."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingDependencyError(["pyarrow"], f"needed for GeoParquet export: {exc}") from None
    return pyarrow, pyarrow.parquet


def export_geoparquet(index_dir: str | Path, out_path: str | Path, batch: int = BATCH,
                      progress: Callable[[float, str], None] | None = None,
                      cancelled: Callable[[], bool] | None = None) -> ExportSummary:
    """Write every live tile of the index at `index_dir` to the GeoParquet file `out_path`."""
    from .store import IndexReader

    pa, pq = load_pyarrow()
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise RsirError(f"{out_path.parent}: no such folder for the export")
    target = output_target(out_path, index_dir, ".parquet file")  # a regular file (or a link to one) outside the index
    started = time.perf_counter()
    with IndexReader(index_dir) as reader:
        dim = int(reader.manifest["model"]["embedding_dim"])
        places = _RasterPlaces()
        # A full disk, no permission (pyarrow's IO errors are OSErrors too): one line naming out_path.
        with atomic_output(target, out_path) as tmp:
            done = _write(pa, pq, tmp, reader, export_schema(pa, dim), places, batch, progress,
                          cancelled)
    return ExportSummary(path=str(out_path), tiles=done, embedding_dim=dim,
                         rasters_without_crs=tuple(sorted(places.without_crs.items())),
                         unplaced=places.unplaced, size_bytes=target.stat().st_size,
                         seconds=time.perf_counter() - started)


def _write(pa, pq, path: Path, reader, schema, places: _RasterPlaces, batch: int,
           progress, cancelled) -> int:
    """Stream the reader's tiles into a Parquet file at `path`, one row group per batch; the tile count."""
    envelope = _Envelope()
    done = 0
    # The Arrow schema (which keeps `embedding` a fixed-size list, and is where pyarrow and GeoPandas
    # read `geo` from) is written at the end, once the bbox is known: see footer().
    with pq.ParquetWriter(str(path), schema, store_schema=False) as writer:
        for tiles, vectors in reader.iter_tiles(batch=batch):
            if cancelled is not None and cancelled():
                raise Cancelled("export cancelled; no file was written")
            quads = places.quads(tiles)
            valid = np.isfinite(quads).all(axis=(1, 2))
            envelope.add(quads[valid])
            table = tile_table(pa, schema, tiles, vectors, quads, valid)
            writer.write_table(table, row_group_size=len(tiles))
            done += len(tiles)
            if progress is not None:
                progress(100.0 * done / max(reader.size, 1), f"{done}/{reader.size} tiles")
        writer.add_key_value_metadata(footer(schema, geo_metadata(envelope.box()),
                                             rsir_metadata(reader.manifest)))
    return done


def export_schema(pa, dim: int):
    bbox = pa.struct([pa.field(name, pa.float64(), nullable=False) for name in BBOX_FIELDS])
    return pa.schema([
        pa.field("tile_id", pa.int64(), nullable=False),
        pa.field("raster", pa.string(), nullable=False),
        pa.field("col", pa.int32(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("embedding", pa.list_(pa.field("element", pa.float32(), nullable=False), dim),
                 nullable=False),
        pa.field("bbox", bbox),
        pa.field("geometry", pa.binary()),
    ])


def footer(schema, geo: dict, rsir: dict) -> dict[str, str]:
    """The file's key-value metadata: `geo`, `rsir`, and the Arrow schema carrying both.

    Arrow stores its schema in Parquet under `ARROW:schema` as the base64 of the IPC-serialised schema
    (what ParquetWriter writes when it opens the file, before any bbox is known); readers of the
    Arrow schema take its metadata, other readers (GDAL, DuckDB) the file's keys: both say the same.
    """
    metadata = {"geo": json.dumps(geo), "rsir": json.dumps(rsir)}
    arrow_schema = base64.b64encode(schema.with_metadata(metadata).serialize().to_pybytes()).decode("ascii")
    return {**metadata, "ARROW:schema": arrow_schema}


def geo_metadata(bbox: list[float] | None) -> dict:
    """The GeoParquet `geo` metadata; no `crs` key means OGC:CRS84."""
    column = {"encoding": "WKB", "geometry_types": ["Polygon"], "orientation": "counterclockwise",
              "edges": "planar", "covering": {"bbox": {name: ["bbox", name] for name in BBOX_FIELDS}}}
    if bbox is not None:
        column["bbox"] = bbox
    return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}


def rsir_metadata(manifest: dict) -> dict:
    """The model's identity as the index records it (name, sha256, embedding_dim, ...), less its path."""
    model = {key: value for key, value in manifest["model"].items() if key != "path"}
    return {"model": model, "embedding_column": "embedding", "index_generation": manifest["generation"],
            "index_built_at": manifest["built_at"], "tile_count": manifest["tile_count"]}


def tile_table(pa, schema, tiles, vectors: np.ndarray, quads: np.ndarray, valid: np.ndarray):
    """One batch of tiles as an Arrow table of `schema` (quads (n, 4, 2) lon/lat, NaN where unplaced)."""
    n, dim = vectors.shape
    windows = np.asarray([t.window for t in tiles], dtype=np.int32).reshape(n, 4)
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    mask = pa.array(~valid)
    lo, hi = np.nan_to_num(quads.min(axis=1)), np.nan_to_num(quads.max(axis=1))
    bbox = pa.StructArray.from_arrays([pa.array(v) for v in (lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1])],
                                      fields=list(schema.field("bbox").type), mask=mask)
    columns = [
        pa.array([t.id for t in tiles], type=pa.int64()),
        pa.array([t.raster.path for t in tiles], type=pa.string()),
        *(pa.array(windows[:, i]) for i in range(4)),
        pa.FixedSizeListArray.from_arrays(flat, type=schema.field("embedding").type),
        bbox,
        wkb_polygons(pa, quads, valid),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def wkb_polygons(pa, quads: np.ndarray, valid: np.ndarray):
    """A binary array of little-endian WKB polygons, one closed ring per quad; null where not valid."""
    records = np.zeros(int(valid.sum()), dtype=WKB_POLYGON)
    records["order"], records["type"], records["rings"], records["points"] = (
        WKB_LITTLE_ENDIAN, WKB_TYPE_POLYGON, 1, 5)
    ring = quads[valid]
    records["xy"] = np.concatenate([ring, ring[:, :1]], axis=1).reshape(-1, 10)
    offsets = np.zeros(len(valid) + 1, dtype=np.int32)
    np.cumsum(valid * WKB_POLYGON.itemsize, out=offsets[1:])
    validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.BinaryArray.from_buffers(pa.binary(), len(valid),
                                       [validity, pa.py_buffer(offsets), pa.py_buffer(records.tobytes())],
                                       null_count=int((~valid).sum()))


class _RasterPlaces:
    """Tile corners on the ground, reprojected raster by raster (each CRS parsed once)."""

    def __init__(self):
        self._crs: dict[str, tuple[object, bool]] = {}  # CRS WKT -> (CRS, is EPSG:4326)
        self.without_crs: dict[str, int] = {}  # path -> tiles
        self.unplaced = 0

    def quads(self, tiles) -> np.ndarray:
        """Corners (n, 4, 2) of the tiles as lon/lat, counter-clockwise; NaN for a tile with no place."""
        quads = np.full((len(tiles), 4, 2), np.nan)
        raster_ids = np.asarray([t.raster.id for t in tiles])
        windows = np.asarray([t.window for t in tiles], dtype=np.float64).reshape(-1, 4)
        for raster_id in np.unique(raster_ids):
            rows = np.flatnonzero(raster_ids == raster_id)
            raster = tiles[rows[0]].raster
            if not raster.crs_wkt:
                self.without_crs[raster.path] = self.without_crs.get(raster.path, 0) + len(rows)
                continue
            quads[rows] = self._ground(raster, windows[rows])
            self.unplaced += int((~np.isfinite(quads[rows]).all(axis=(1, 2))).sum())
        return quads

    def _ground(self, raster, windows: np.ndarray) -> np.ndarray:
        a, b, c, d, e, f = raster.transform[:6]
        cols = windows[:, [0, 0, 0, 0]] + windows[:, [2]] * np.array([0, 1, 1, 0])
        rows = windows[:, [1, 1, 1, 1]] + windows[:, [3]] * np.array([0, 0, 1, 1])
        xs, ys = a * cols + b * rows + c, d * cols + e * rows + f
        if raster.crs_wkt not in self._crs:
            crs = crs_from(raster.crs_wkt)
            self._crs[raster.crs_wkt] = crs, crs.to_epsg() == 4326
        _, is_4326 = self._crs[raster.crs_wkt]
        if is_4326:
            lon, lat = xs, ys
        elif not reaches_lonlat(raster.crs_wkt):  # a local CRS (site grid): no place on the ground
            lon, lat = np.full(xs.shape, np.nan), np.full(ys.shape, np.nan)
        else:  # corners outside the projection's domain come back NaN instead of failing the export
            lon, lat, _ = lonlat_points(raster.crs_wkt, xs.ravel(), ys.ravel())
            lon, lat = lon.reshape(xs.shape), lat.reshape(ys.shape)
        lon = lon[:, :1] + (lon - lon[:, :1] + 180.0) % 360.0 - 180.0  # one piece across the antimeridian
        quads = np.stack([lon, lat], axis=2)
        quads[~np.isfinite(quads).all(axis=(1, 2))] = np.nan
        clockwise = _signed_areas(quads) < 0
        quads[clockwise] = quads[clockwise, ::-1]
        return quads


def _signed_areas(quads: np.ndarray) -> np.ndarray:
    """Shoelace areas of (n, k, 2) rings, positive when counter-clockwise (relative to the first corner)."""
    p = quads - quads[:, :1]
    x, y = p[..., 0], p[..., 1]
    return 0.5 * (x * np.roll(y, -1, axis=1) - y * np.roll(x, -1, axis=1)).sum(axis=1)


class _Envelope:
    """The bounding box of all geometries written so far."""

    def __init__(self):
        self.lo = np.array([np.inf, np.inf])
        self.hi = -self.lo

    def add(self, quads: np.ndarray) -> None:
        if len(quads):
            self.lo = np.minimum(self.lo, quads.reshape(-1, 2).min(axis=0))
            self.hi = np.maximum(self.hi, quads.reshape(-1, 2).max(axis=0))

    def box(self) -> list[float] | None:
        return None if not np.isfinite(self.lo).all() else [*map(float, self.lo), *map(float, self.hi)]
