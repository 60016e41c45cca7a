"""Answering a query: embed a box of a raster (or an image file) and rank the index's tiles."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .embedder import shared_embedder
from .errors import IndexStoreError, ModelError, RasterError, RasterMissingError, RsirError, SearchCancelled
from .geometry import (
    Quad,
    Ring,
    crs_from,
    ground_overlap,
    ground_overlaps,
    ground_quads,
    window_iou,
)
from .model import ModelInfo, find_model, read_model
from .params import SearchParams
from .query_box import checked_box as _checked_box
from .query_box import fmt_box as _fmt
from .query_box import pixel_window as _pixel_window  # noqa: F401 (feedback.py finds indexed tiles with it)
from .query_box import query_window
from .query_image import plan_image_query
from .raster import RasterSource, describe, open_dataset, resolve_raster_path
from .store import IndexReader, TileEntry, check_model, shared_reader
from .tiling import read_window, window_corners

if TYPE_CHECKING:
    from .feedback import Feedback

OVERSAMPLE = 8  # candidates fetched per wanted hit: overlap exclusion and NMS discard many
# NMS also drops a tile that shares more than this fraction of the smaller of it and a better hit, whatever
# their IoU. On the default grid (stride half a tile) side neighbours share 1/2 of a tile (IoU 1/3, above
# nms_iou 0.3 already) and diagonal neighbours 1/4 (IoU 1/7): without this rule one object in their
# shared quarter was hit #1 and #3. 1/5 suppresses them, a small tile inside a larger one of another raster
# too, and keeps tiles that share a thin strip (1/8 on a 7/8-stride grid). nms_iou 1 turns NMS off.
NMS_SHARED = 0.2

# A source of ranked candidates: given n, the best n (or fewer) tiles as (scores, ids), best first.
Candidates = Callable[[int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    score: float  # cosine similarity to the query (or a feedback classifier's probability: see SearchResult)
    raster: str
    window: tuple[int, int, int, int]  # col, row, width, height in the raster's pixels
    crs_wkt: str  # the raster's CRS
    polygon: Ring  # the tile's corners in the raster's CRS
    bounds_4326: tuple[float, float, float, float]
    bands: tuple[int, ...]  # how the raster was fed to the model, so a thumbnail shows what was embedded
    stretch: tuple[tuple[float, float], ...] | None
    tile_id: int = -1  # the tile's id in the index (FAISS and catalog); -1 only for a Hit made by hand


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    query_polygon: Ring | None  # in query_crs_wkt; None for an image query
    query_crs_wkt: str  # the query raster's CRS; "" for an image query
    query_raster: str | None
    provider: str
    seconds: float
    all_excluded: bool = False  # no hit because every indexed tile overlaps the query box
    query_indexed: bool = True  # False: the query raster is not in the index (its bands were chosen afresh)
    scoring: str = "cosine"  # what Hit.score is: "cosine" similarity, or "probability" (feedback classifier)
    feedback: "Feedback | None" = None  # the labelled examples of a feedback search (core/feedback.py)
    notes: tuple[str, ...] = ()  # what a user should know about how the query was taken (image scale)


@dataclass(frozen=True)
class _Query:
    """Where the query box lies: its raster and pixel window, and its ground quad (None without a CRS)."""

    raster: str
    window: tuple[int, int, int, int]
    ground: Quad | None


def search_box(index_dir: str | Path, raster_path: str | Path, bbox: tuple[float, float, float, float],
               bbox_crs: str | None, params: SearchParams,
               is_cancelled: Callable[[], bool] | None = None) -> SearchResult:
    """Find the tiles most like the box `bbox` (in `bbox_crs`, default the raster's CRS) of a raster."""
    started = time.perf_counter()
    bbox = _checked_box(bbox)
    if bbox_crs:
        crs_from(bbox_crs)  # an unknown CRS is the user's first problem, before any file is read
    reader = _reader(index_dir)
    model = _model_for(reader, params)
    source, window = _box_window(reader, model, raster_path, bbox, bbox_crs)
    tile = _read_box(source, window, model.contract.input_size, bbox)
    embedder = shared_embedder(model, params.device)
    query = (embedder.embed_tta if params.tta else embedder.embed)(tile[None])[0]
    areas = _query_areas(source, [window]) if params.exclude_query_overlap else []
    hits, all_excluded = _rank(reader, _nearest(reader, query), params, areas, is_cancelled)
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
    reader = _reader(index_dir)
    model = _model_for(reader, params)
    source = describe(_query_raster_path(image_path), None, model.contract.bands)
    plan = plan_image_query(reader, source, image_gsd)
    with open_dataset(source.path) as dataset:
        tile, _ = read_window(dataset, source, plan.window, model.contract.input_size)
    embedder = shared_embedder(model, params.device)
    query = (embedder.embed_tta if params.tta else embedder.embed)(tile[None])[0]
    hits, _ = _rank(reader, _nearest(reader, query), params, [], is_cancelled)
    return SearchResult(hits=hits, query_polygon=None, query_crs_wkt="", query_raster=None,
                        provider=embedder.describe(), seconds=time.perf_counter() - started, notes=plan.notes)


def _reader(index_dir: str | Path) -> IndexReader:
    """The index's shared reader; a missing folder or a file in its place is named as such."""
    path = Path(index_dir).expanduser()
    if not path.exists():
        raise IndexStoreError(f"{index_dir}: no such index directory; build an index there first")
    if not path.is_dir():
        raise IndexStoreError(f"{index_dir}: is a file, not an rsir index directory")
    return shared_reader(path)


def _query_raster_path(path: str | Path) -> str:
    """The query raster's resolved path; a missing file is 'not found' (not 'gone from disk')."""
    try:
        return resolve_raster_path(path)
    except RasterMissingError as exc:
        raise RasterError(exc.path, "not found (no such file)") from exc


def _model_for(reader: IndexReader, params: SearchParams) -> ModelInfo:
    """The model given, else the one the index was built with (found at its path or bundled)."""
    built_with = reader.manifest["model"]
    if params.model_path is not None:
        model = read_model(params.model_path)
    else:
        model = find_model(built_with["sha256"], built_with.get("path"))
        if model is None:
            raise ModelError(f"{reader.index_dir}: the model this index was built with "
                             f"('{built_with['name']}', {built_with.get('path')}) is not found; pass it")
    check_model(reader.manifest, model, reader.index_dir)
    return model


def _box_window(reader: IndexReader, model: ModelInfo, raster_path: str | Path, bbox,
                bbox_crs: str | None) -> tuple[RasterSource, tuple[int, int, int, int]]:
    """The raster a box lies on (fed with the bands it was indexed with) and the box's pixel window."""
    resolved = _query_raster_path(raster_path)
    source = describe(resolved, _indexed_bands(reader, resolved), model.contract.bands)
    return source, query_window(source, bbox, bbox_crs)


def _read_box(source: RasterSource, window: tuple[int, int, int, int], size: int, bbox) -> np.ndarray:
    """A box's pixels as one model input tile (bands, size, size); an error when it holds only nodata."""
    with open_dataset(source.path) as dataset:
        tile, valid = read_window(dataset, source, window, size)
    if valid == 0:
        raise RasterError(source.path, f"the query box {_fmt(bbox)} holds only nodata")
    return tile


def _query_areas(raster, windows: list[tuple[int, int, int, int]]) -> list[_Query]:
    """Where boxes of one raster lie, for excluding the hits that overlap them (one reprojection call).

    `raster` is a RasterSource or an index's RasterEntry.
    """
    ground = ground_quads(raster.crs_wkt, raster.transform, windows)
    return [_Query(raster=raster.path, window=tuple(window), ground=None if ground is None else ground[i])
            for i, window in enumerate(windows)]


def _nearest(reader: IndexReader, query: np.ndarray) -> Candidates:
    """The index's tiles by cosine similarity to `query` (FAISS)."""
    return lambda n: reader.search(query, n)


def _indexed_bands(reader: IndexReader, resolved: str) -> tuple[int, ...] | None:
    """Query a raster with the bands it was indexed with, so query and tiles are fed alike."""
    for entry in reader.rasters.values():
        if entry.path == resolved and entry.tiling.get("bands"):
            return tuple(entry.tiling["bands"])
    return None


def _rank(reader: IndexReader, candidates: Candidates, params: SearchParams, areas: Sequence[_Query],
          is_cancelled: Callable[[], bool] | None,
          skip: frozenset[int] = frozenset()) -> tuple[list[Hit], bool]:
    """Top-k of the candidates after dropping the query areas and the tiles in `skip`, thinning
    overlaps (NMS) and low scores.

    Both work on the ground, across rasters: two rasters of the same place (another date, another
    CRS or resolution) must neither return the query area nor fill the list with one place twice.
    Candidates are fetched in growing rounds until k survive or the index is exhausted. Also says
    whether no hit is left because every indexed tile overlaps a query area (or is skipped).
    """
    if reader.size == 0:
        raise IndexStoreError(f"{reader.index_dir}: the index holds no tiles")
    footprints = _Footprints()
    fetch = min(reader.size, params.k * OVERSAMPLE + 64)
    while True:
        if is_cancelled and is_cancelled():
            raise SearchCancelled("search cancelled")
        scores, ids = candidates(fetch)
        tiles = reader.tiles(ids.tolist())
        footprints.add(tiles)
        kept: list[tuple[float, TileEntry]] = []
        excluded = 0
        for score, tile in zip(scores.tolist(), tiles):
            if params.min_score is not None and score < params.min_score:
                break  # scores come sorted: nothing later passes either
            if tile.id in skip or any(footprints.overlaps_query(tile, area) for area in areas):
                excluded += 1
                continue
            if params.nms_iou < 1.0 and any(footprints.suppresses(other, tile, params.nms_iou)
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
    all_excluded = not kept and len(scores) > 0 and excluded == len(scores)
    return [_hit(rank, score, tile) for rank, (score, tile) in enumerate(kept, start=1)], all_excluded


class _Footprints:
    """Ground quads of candidate tiles, computed once per tile, one reprojection call per raster.

    Each quad's longitude/latitude box is kept too: most pairs of tiles are far apart, and comparing
    boxes settles them without clipping polygons.
    """

    def __init__(self):
        self._quads: dict[int, Quad | None] = {}
        self._boxes: dict[int, np.ndarray | None] = {}

    def add(self, tiles: list[TileEntry]) -> None:
        by_raster: dict[int, list[TileEntry]] = {}
        for tile in tiles:
            if tile.id not in self._quads:
                by_raster.setdefault(tile.raster.id, []).append(tile)
        for group in by_raster.values():
            raster = group[0].raster
            quads = ground_quads(raster.crs_wkt, raster.transform, [t.window for t in group])
            boxes = None if quads is None else np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)
            for i, tile in enumerate(group):
                self._quads[tile.id] = None if quads is None else quads[i]
                self._boxes[tile.id] = None if boxes is None else boxes[i]

    def overlaps_query(self, tile: TileEntry, where: _Query) -> bool:
        """Whether a tile shares area with the query box: in pixels on its raster, else on the ground."""
        if tile.raster.path == where.raster:
            return window_iou(tile.window, where.window) > 0
        quad = self._quads[tile.id]
        if quad is None or where.ground is None:
            return False
        box = np.concatenate([where.ground.min(axis=0), where.ground.max(axis=0)])
        return _boxes_may_overlap(self._boxes[tile.id], box) and ground_overlaps(quad, where.ground)

    def suppresses(self, better: TileEntry, tile: TileEntry, nms_iou: float) -> bool:
        """Whether `tile` is the place of a `better` hit again: IoU above nms_iou, or more than NMS_SHARED
        of the smaller of the two shared. By pixels on one raster, else on the ground (never where either
        has no CRS)."""
        if better.raster.id == tile.raster.id:
            inter, area_a, area_b = _window_overlap(better.window, tile.window)
        else:
            qa, qb = self._quads[better.id], self._quads[tile.id]
            if qa is None or qb is None or not _boxes_may_overlap(self._boxes[better.id],
                                                                  self._boxes[tile.id]):
                return False
            inter, area_a, area_b = ground_overlap(qa, qb)
        if inter <= 0:
            return False
        return inter / (area_a + area_b - inter) > nms_iou or inter > NMS_SHARED * min(area_a, area_b)


def _window_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Pixels two windows (col, row, width, height) share, and the pixels of each."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy, a[2] * a[3], b[2] * b[3]


def _boxes_may_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two (lon_min, lat_min, lon_max, lat_max) boxes may share area, longitudes taken modulo 360
    (quads are unwrapped each on its own); False for boxes with NaN, whose quads overlap nothing."""
    if not (a[1] < b[3] and b[1] < a[3]):
        return False  # also for NaN
    return any(a[0] < b[2] + shift and b[0] + shift < a[2] for shift in (-360.0, 0.0, 360.0))


def _hit(rank: int, score: float, tile: TileEntry) -> Hit:
    xs, ys = window_corners(tile.raster.transform, tile.window)
    raster = tile.raster
    return Hit(rank=rank, score=float(score), raster=raster.path, window=tuple(tile.window),
               crs_wkt=raster.crs_wkt, polygon=list(zip(xs, ys)), bounds_4326=tuple(tile.bounds_4326),
               bands=raster.bands, stretch=raster.stretch, tile_id=int(tile.id))
