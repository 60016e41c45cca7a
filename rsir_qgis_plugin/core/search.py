"""Answering a query: embed a box of a raster (or an image file) and rank the index's tiles.

The entry points only; the steps they share with feedback search live in query_step (index, model, the
box's pixels, the query's areas, nearest tiles), query_expansion (re-ranking: αQE over the index's
search vectors), ranking (exclusion, NMS, top k) and results (Hit, SearchResult).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .embedder import shared_embedder
from .geometry import crs_from
from .params import SearchParams
from .query_box import checked_box
from .query_expansion import reranked
from .query_image import plan_image_query
from .query_step import box_window, index_reader, model_for, query_areas, query_raster_path, read_box
from .ranking import rank
from .raster import describe, open_dataset
from .results import SearchResult
from .tiling import read_window, window_corners


def search_box(index_dir: str | Path, raster_path: str | Path, bbox: tuple[float, float, float, float],
               bbox_crs: str | None, params: SearchParams,
               is_cancelled: Callable[[], bool] | None = None) -> SearchResult:
    """Find the tiles most like the box `bbox` (in `bbox_crs`, default the raster's CRS) of a raster."""
    started = time.perf_counter()
    bbox = checked_box(bbox)
    if bbox_crs:
        crs_from(bbox_crs)  # an unknown CRS is the user's first problem, before any file is read
    reader = index_reader(index_dir)
    model = model_for(reader, params)
    source, window = box_window(reader, model, raster_path, bbox, bbox_crs)
    tile = read_box(source, window, model.contract.input_size, bbox)
    embedder = shared_embedder(model, params.device)
    query = (embedder.embed_tta if params.tta else embedder.embed)(tile[None])[0]
    areas = query_areas(source, [window]) if params.exclude_query_overlap else []
    hits, all_excluded = rank(reader, reranked(reader, query, params, areas, is_cancelled), params, areas,
                              is_cancelled)
    xs, ys = window_corners(source.transform, window)
    return SearchResult(hits=hits, query_polygon=list(zip(xs, ys)), query_crs_wkt=source.crs_wkt,
                        query_raster=source.path, provider=embedder.describe(),
                        seconds=time.perf_counter() - started, all_excluded=all_excluded,
                        query_indexed=any(entry.path == source.path for entry in reader.rasters.values()))


def search_image(index_dir: str | Path, image_path: str | Path, params: SearchParams,
                 is_cancelled: Callable[[], bool] | None = None,
                 image_gsd: float | None = None) -> SearchResult:
    """Find the tiles most like an image file (any format GDAL reads: JPEG, PNG, GeoTIFF).

    The image is seen at the tiles' ground scale where its scale is known (`image_gsd`, metres a pixel,
    else its georeferencing): a larger image is embedded by its centre, one tile's ground size;
    SearchResult.notes say when the scales are far apart or the image's is unknown (core/query_image.py).
    """
    started = time.perf_counter()
    reader = index_reader(index_dir)
    model = model_for(reader, params)
    source = describe(query_raster_path(image_path), None, model.contract.bands)
    plan = plan_image_query(reader, source, image_gsd)
    with open_dataset(source.path) as dataset:
        tile, _ = read_window(dataset, source, plan.window, model.contract.input_size)
    embedder = shared_embedder(model, params.device)
    query = (embedder.embed_tta if params.tta else embedder.embed)(tile[None])[0]
    hits, _ = rank(reader, reranked(reader, query, params, [], is_cancelled), params, [], is_cancelled)
    return SearchResult(hits=hits, query_polygon=None, query_crs_wkt="", query_raster=None,
                        provider=embedder.describe(), seconds=time.perf_counter() - started, notes=plan.notes)
