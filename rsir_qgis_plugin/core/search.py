"""Answering a query: embed a box of a raster (or an image file) and rank the index's tiles.

The entry points only; the steps they share with feedback search live in query_step (index, model, the
box's pixels at each ground scale of the index, the query's areas, nearest tiles), query_expansion
(re-ranking: αQE over the index's search vectors, scale by scale), ranking (exclusion, NMS, top k, each
raster's tiles at their scale) and results (Hit, SearchResult).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .embedder import shared_embedder
from .geometry import crs_from
from .params import SearchParams
from .query_box import checked_box
from .query_expansion import expanded_scales
from .query_image import plan_image_query
from .query_step import (
    Candidates,
    ScaleQuery,
    box_scale_windows,
    box_window,
    index_reader,
    model_for,
    query_areas,
    query_raster_path,
    read_boxes,
)
from .ranking import TileFootprints, by_scale, rank
from .raster import describe, open_dataset
from .results import Scorer, SearchResult
from .scales import ScaleWindow
from .store import IndexReader
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
    # One embedding per ground scale of the index's tiles (one, the box as drawn, for most indexes).
    scales = box_scale_windows(reader, source, window) if params.scale_aware else [ScaleWindow(window)]
    tiles = read_boxes(source, [scale.window for scale in scales], model.contract.input_size, bbox)
    embedder = shared_embedder(model, params.device)
    vectors = (embedder.embed_tta if params.tta else embedder.embed)(tiles)
    areas = query_areas(source, [window]) if params.exclude_query_overlap else []
    footprints = TileFootprints()  # the expansion's ranking and the final one place each tile once
    scorer, candidates = _ranked_by(reader, [ScaleQuery(v, s.rasters) for v, s in zip(vectors, scales)], params,
                                    areas, is_cancelled, footprints)
    hits, all_excluded = rank(reader, candidates, params, areas, is_cancelled, footprints=footprints)
    xs, ys = window_corners(source.transform, window)
    return SearchResult(hits=hits, query_polygon=list(zip(xs, ys)), query_crs_wkt=source.crs_wkt,
                        query_raster=source.path, provider=embedder.describe(),
                        seconds=time.perf_counter() - started, all_excluded=all_excluded,
                        query_indexed=any(entry.path == source.path for entry in reader.rasters.values()),
                        scorer=scorer)


def search_image(index_dir: str | Path, image_path: str | Path, params: SearchParams,
                 is_cancelled: Callable[[], bool] | None = None,
                 image_gsd: float | None = None) -> SearchResult:
    """Find the tiles most like an image file (any format GDAL reads: JPEG, PNG, GeoTIFF).

    The image is seen at the tiles' ground scale where its scale is known (`image_gsd`, metres a pixel,
    else its georeferencing): a larger image is embedded by its centre, one tile's ground size (once per
    ground scale where the index holds several, each raster's tiles ranked at theirs);
    SearchResult.notes say when the scales are far apart or the image's is unknown (core/query_image.py).
    """
    started = time.perf_counter()
    reader = index_reader(index_dir)
    model = model_for(reader, params)
    source = describe(query_raster_path(image_path), None, model.contract.bands)
    plan = plan_image_query(reader, source, image_gsd)
    scales = [ScaleWindow(plan.window), *(plan.scales if params.scale_aware else ())]
    with open_dataset(source.path) as dataset:
        tiles = np.stack([read_window(dataset, source, scale.window, model.contract.input_size)[0]
                          for scale in scales])
    embedder = shared_embedder(model, params.device)
    vectors = (embedder.embed_tta if params.tta else embedder.embed)(tiles)
    footprints = TileFootprints()
    scorer, candidates = _ranked_by(reader, [ScaleQuery(v, s.rasters) for v, s in zip(vectors, scales)], params,
                                    [], is_cancelled, footprints)
    hits, _ = rank(reader, candidates, params, [], is_cancelled, footprints=footprints)
    return SearchResult(hits=hits, query_polygon=None, query_crs_wkt="", query_raster=None,
                        provider=embedder.describe(), seconds=time.perf_counter() - started, notes=plan.notes,
                        scorer=scorer)


def _ranked_by(reader: IndexReader, parts: list[ScaleQuery], params: SearchParams, areas,
               is_cancelled, footprints: TileFootprints | None = None) -> tuple[Scorer, Candidates]:
    """The queries that rank (each scale's expanded by αQE where params.rerank) and their candidates; the
    Scorer keeps the first scale's (the box as drawn, or the image at the tiles' median size), so a saved
    search scores new tiles alike (tiles of another ground scale by that query: an approximation)."""
    expanded = expanded_scales(reader, parts, params, areas, is_cancelled, footprints)
    return (Scorer(query=expanded[0].vector, augmented=params.rerank, areas=tuple(areas)),
            by_scale(reader, expanded, params.rerank))
