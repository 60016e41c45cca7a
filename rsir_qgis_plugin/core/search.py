"""Answering a query: embed a box of a raster (or an image file) and rank the index's tiles."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .embedder import shared_embedder
from .errors import IndexStoreError, ModelError, RasterError, SearchCancelled
from .geometry import Ring, boxes_intersect, reproject_bounds, window_iou
from .model import DEFAULT_MODEL_PATH, ModelInfo, read_model
from .params import SearchParams
from .raster import describe, open_dataset
from .store import IndexReader, TileEntry, check_model, shared_reader
from .tiling import read_window, window_corners

OVERSAMPLE = 8  # candidates fetched per wanted hit: overlap exclusion and NMS discard many


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    score: float  # cosine similarity to the query
    raster: str
    window: tuple[int, int, int, int]  # col, row, width, height in the raster's pixels
    crs_wkt: str  # the raster's CRS
    polygon: Ring  # the tile's corners in the raster's CRS
    bounds_4326: tuple[float, float, float, float]
    bands: tuple[int, ...]  # how the raster was fed to the model, so a thumbnail shows what was embedded
    stretch: tuple[tuple[float, float], ...] | None


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    query_polygon: Ring | None  # in query_crs_wkt; None for an image query
    query_crs_wkt: str  # the query raster's CRS; "" for an image query
    query_raster: str | None
    provider: str
    seconds: float


def search_box(index_dir: str | Path, raster_path: str | Path, bbox: tuple[float, float, float, float],
               bbox_crs: str | None, params: SearchParams,
               is_cancelled: Callable[[], bool] | None = None) -> SearchResult:
    """Find the tiles most like the box `bbox` (in `bbox_crs`, default the raster's CRS) of a raster."""
    started = time.perf_counter()
    reader = shared_reader(index_dir)
    model = _model_for(reader, params)
    bands = _indexed_bands(reader, raster_path)
    source = describe(raster_path, bands, model.contract.bands)
    box = reproject_bounds(tuple(bbox), bbox_crs or "", source.crs_wkt)
    window = _pixel_window(source, box)
    with open_dataset(source.path) as dataset:
        tile, valid = read_window(dataset, source, window, model.contract.input_size)
    if valid == 0:
        raise RasterError(source.path, f"the query box {tuple(round(v, 3) for v in box)} holds only nodata")
    embedder = shared_embedder(model, params.device)
    query = (embedder.embed_tta if params.tta else embedder.embed)(tile[None])[0]
    exclude = (source.path, _window_box(source.transform, window)) if params.exclude_query_overlap else None
    hits = _rank(reader, query, params, exclude, is_cancelled)
    xs, ys = window_corners(source.transform, window)
    return SearchResult(hits=hits, query_polygon=list(zip(xs, ys)), query_crs_wkt=source.crs_wkt,
                        query_raster=source.path, provider=embedder.describe(),
                        seconds=time.perf_counter() - started)


def search_image(index_dir: str | Path, image_path: str | Path, params: SearchParams,
                 is_cancelled: Callable[[], bool] | None = None) -> SearchResult:
    """Find the tiles most like a whole image file (any format GDAL reads: JPEG, PNG, GeoTIFF)."""
    started = time.perf_counter()
    reader = shared_reader(index_dir)
    model = _model_for(reader, params)
    source = describe(image_path, None, model.contract.bands)
    with open_dataset(source.path) as dataset:
        tile, _ = read_window(dataset, source, (0, 0, source.width, source.height), model.contract.input_size)
    embedder = shared_embedder(model, params.device)
    query = (embedder.embed_tta if params.tta else embedder.embed)(tile[None])[0]
    hits = _rank(reader, query, params, None, is_cancelled)
    return SearchResult(hits=hits, query_polygon=None, query_crs_wkt="", query_raster=None,
                        provider=embedder.describe(), seconds=time.perf_counter() - started)


def _model_for(reader: IndexReader, params: SearchParams) -> ModelInfo:
    """The model given, else the one the index was built with (found at its path or bundled)."""
    built_with = reader.manifest["model"]
    if params.model_path is not None:
        model = read_model(params.model_path)
    else:
        candidates = [Path(built_with.get("path", "")), DEFAULT_MODEL_PATH]
        models = (read_model(p) for p in candidates if p.is_file())
        model = next((m for m in models if m.sha256 == built_with["sha256"]), None)
        if model is None:
            raise ModelError(f"{reader.index_dir}: the model this index was built with "
                             f"('{built_with['name']}', {built_with.get('path')}) is not found; pass it")
    check_model(reader.manifest, model, reader.index_dir)
    return model


def _indexed_bands(reader: IndexReader, raster_path) -> tuple[int, ...] | None:
    """Query a raster with the bands it was indexed with, so query and tiles are fed alike."""
    resolved = str(Path(raster_path).expanduser().resolve())
    for entry in reader.rasters.values():
        if entry.path == resolved and entry.tiling.get("bands"):
            return tuple(entry.tiling["bands"])
    return None


def _pixel_window(source, box) -> tuple[int, int, int, int]:
    """The box's pixel window, clipped to the raster; an error when the box misses the raster."""
    from affine import Affine

    inverse = ~Affine(*source.transform)
    corners = [inverse * (x, y) for x in (box[0], box[2]) for y in (box[1], box[3])]
    cols, rows = [c[0] for c in corners], [c[1] for c in corners]
    # A box reprojected from another CRS lands a hair off the pixel grid: snap within 1/100 pixel.
    snap = 0.01
    col0, col1 = max(0, int(np.floor(min(cols) + snap))), min(source.width, int(np.ceil(max(cols) - snap)))
    row0, row1 = max(0, int(np.floor(min(rows) + snap))), min(source.height, int(np.ceil(max(rows) - snap)))
    if col1 - col0 < 1 or row1 - row0 < 1:
        raise RasterError(source.path, f"the query box {tuple(round(v, 3) for v in box)} (in the raster's CRS) "
                                       "does not overlap the raster")
    return col0, row0, col1 - col0, row1 - row0


def _window_box(transform, window) -> tuple[float, float, float, float]:
    xs, ys = window_corners(transform, window)
    return min(xs), min(ys), max(xs), max(ys)


def _rank(reader: IndexReader, query: np.ndarray, params: SearchParams,
          exclude: tuple[str, tuple] | None, is_cancelled: Callable[[], bool] | None) -> list[Hit]:
    """Top-k tiles after dropping the query's own area, thinning overlaps (NMS) and low scores.

    Candidates are fetched in growing rounds until k survive or the index is exhausted.
    """
    if reader.size == 0:
        raise IndexStoreError(f"{reader.index_dir}: the index holds no tiles")
    fetch = min(reader.size, params.k * OVERSAMPLE + 64)
    while True:
        if is_cancelled and is_cancelled():
            raise SearchCancelled("search cancelled")
        scores, ids = reader.search(query, fetch)
        kept: list[tuple[float, TileEntry]] = []
        for score, tile in zip(scores.tolist(), reader.tiles(ids.tolist())):
            if params.min_score is not None and score < params.min_score:
                break  # scores come sorted: nothing later passes either
            if exclude and tile.raster.path == exclude[0] and boxes_intersect(tile.bounds, exclude[1]):
                continue
            if any(other.raster.id == tile.raster.id and window_iou(other.window, tile.window) > params.nms_iou
                   for _, other in kept):
                continue
            kept.append((score, tile))
            if len(kept) == params.k:
                break
        exhausted = fetch >= reader.size or (params.min_score is not None and len(scores)
                                               and scores[-1] < params.min_score)
        if len(kept) == params.k or exhausted:
            break
        fetch = min(reader.size, fetch * 4)
    return [_hit(rank, score, tile) for rank, (score, tile) in enumerate(kept, start=1)]


def _hit(rank: int, score: float, tile: TileEntry) -> Hit:
    xs, ys = window_corners(tile.raster.transform, tile.window)
    raster = tile.raster
    return Hit(rank=rank, score=float(score), raster=raster.path, window=tuple(tile.window),
               crs_wkt=raster.crs_wkt, polygon=list(zip(xs, ys)), bounds_4326=tuple(tile.bounds_4326),
               bands=raster.bands, stretch=raster.stretch)
