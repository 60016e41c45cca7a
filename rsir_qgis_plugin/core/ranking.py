"""Ranking candidates into hits: leave out the tiles that overlap the query, thin repeats of one place
(NMS) and low scores, and keep the top k.

Both rules work on the ground, across rasters: two rasters of the same place (another date, another CRS
or resolution) must neither return the query area nor fill the list with one place twice. A query taken at
several ground scales ranks each raster's tiles against its embedding at their scale (by_scale).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np

from .errors import IndexStoreError, SearchCancelled
from .footprints import boxes_may_overlap
from .geometry import Quad, corner_quads, ground_overlap, ground_overlaps, window_corner_xy, window_iou
from .params import SearchParams
from .query_step import Candidates, QueryArea, ScaleQuery
from .results import Hit
from .scales import tile_scales
from .store import IndexReader, TileEntry
from .tiling import window_corners

OVERSAMPLE = 8  # candidates fetched per wanted hit: overlap exclusion and NMS discard many
# NMS also drops a tile that shares more than this fraction of the smaller of it and a better hit, whatever
# their IoU. On the default grid (stride half a tile) side neighbours share 1/2 of a tile (IoU 1/3, above
# nms_iou 0.3 already) and diagonal neighbours 1/4 (IoU 1/7): without this rule one object in their
# shared quarter was hit #1 and #3. 1/5 suppresses them, a small tile inside a larger one of another raster
# too, and keeps tiles that share a thin strip (1/8 on a 7/8-stride grid). nms_iou 1 turns NMS off.
NMS_SHARED = 0.2
# A ground scale of at most this many tiles is ranked by scoring each of its tiles (64k x 512 float32: a
# 128 MB matrix product, ~20 ms) instead of widening FAISS's k to its share of the index: a rare scale of
# 750 tiles among 10^6 widened k to ~300,000 per query (1.6 s re-ranked, docs/results.md). It is exact too.
EXACT_SCALE_TILES = 65_536


def rank(reader: IndexReader, candidates: Candidates, params: SearchParams, areas: Sequence[QueryArea],
         is_cancelled: Callable[[], bool] | None,
         skip: frozenset[int] = frozenset(), footprints: TileFootprints | None = None) -> tuple[list[Hit], bool]:
    """Top-k of the candidates after dropping the query areas and the tiles in `skip`, thinning
    overlaps (NMS) and low scores.

    Candidates are fetched in growing rounds until k survive or the index is exhausted. Also says
    whether no hit is left because every indexed tile overlaps a query area (or is skipped).
    `footprints`: the ground quads of tiles already met, shared by two rankings of one query (αQE).
    """
    if reader.size == 0:
        raise IndexStoreError(f"{reader.index_dir}: the index holds no tiles")
    footprints = footprints if footprints is not None else TileFootprints()
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
    return [_hit(number, score, tile) for number, (score, tile) in enumerate(kept, start=1)], all_excluded


def by_scale(reader: IndexReader, parts: Sequence[ScaleQuery], augmented: bool = False,
             only: int | None = None) -> Candidates:
    """The index's tiles, each scored by the cosine with its own scale's query (ScaleQuery.rasters), best
    first; `only`: the tiles of parts[only] alone. `augmented`: by the index's DBA search vectors where it
    has them (IndexReader.search). One part for every raster is the plain FAISS search, exactly."""
    if len(parts) == 1 and parts[0].rasters is None:
        vector = parts[0].vector
        return lambda n: reader.search(vector, n, augmented)
    named = frozenset().union(*(part.rasters for part in parts if part.rasters is not None))
    sources = [_scale_source(reader, part, named, augmented)
               for i, part in enumerate(parts) if only is None or i == only]

    def candidates(n: int) -> tuple[np.ndarray, np.ndarray]:
        found = [source(n) for source in sources]
        scores = np.concatenate([f[0] for f in found])
        ids = np.concatenate([f[1] for f in found])
        order = np.argsort(-scores, kind="stable")[:n]
        return scores[order], ids[order]
    return candidates


def _scale_source(reader: IndexReader, part: ScaleQuery, named: frozenset[int], augmented: bool) -> Candidates:
    """The best tiles of one part's rasters for its query. A part of few tiles is scored exactly, all of
    them (exact_source); else FAISS searches the whole index, widened (by the index's share of those
    rasters, then 4x a round) until n of them are found."""
    scales = tile_scales(reader)
    counts = scales.counts
    rasters = part.rasters if part.rasters is not None else frozenset(counts).difference(named)
    tiles = sum(counts.get(r, 0) for r in rasters)
    if tiles <= EXACT_SCALE_TILES:
        vector = part.vector.astype(np.float32)
        return exact_source(reader, reader.raster_tile_ids(rasters), lambda vectors: vectors @ vector, augmented)
    members = np.array(sorted(rasters), dtype=np.int64)
    share = tiles / max(reader.size, 1)

    def candidates(n: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(reader.size, max(n, int(np.ceil(1.2 * n / share))))
        while True:
            scores, ids = reader.search(part.vector, k, augmented)
            keep = np.isin(scales.rasters_of(ids), members)
            if keep.sum() >= n or k >= reader.size:
                return scores[keep][:n], ids[keep][:n]
            k = min(reader.size, k * 4)
    return candidates


def exact_source(reader: IndexReader, ids: np.ndarray, score: Callable[[np.ndarray], np.ndarray],
                 augmented: bool) -> Candidates:
    """The given tiles ranked by `score` of their stored vectors, best first (scored once, on first use,
    EXACT_SCALE_TILES at a time; ties keep the order of `ids`). A cosine with a query vector gives the
    scores FAISS would, as IndexReader.vectors holds what it ranks."""
    ranked: list[tuple[np.ndarray, np.ndarray]] = []

    def candidates(n: int) -> tuple[np.ndarray, np.ndarray]:
        if not ranked:
            scores = np.concatenate([np.zeros(0)] + [
                score(reader.vectors(ids[start:start + EXACT_SCALE_TILES], augmented))
                for start in range(0, len(ids), EXACT_SCALE_TILES)])
            order = np.argsort(-scores, kind="stable")
            ranked.append((scores[order].astype(np.float32), ids[order]))
        scores, found = ranked[0]
        return scores[:n], found[:n]
    return candidates


class TileFootprints:
    """Ground quads of candidate tiles, computed once per tile, one reprojection call per raster.

    Each quad's longitude/latitude box is kept too: most pairs of tiles are far apart, and comparing
    boxes settles them without clipping polygons.
    """

    def __init__(self):
        self._quads: dict[int, Quad | None] = {}
        self._boxes: dict[int, np.ndarray | None] = {}

    def add(self, tiles: list[TileEntry]) -> None:
        # One reprojection call per CRS, not per raster: candidates come from tens of rasters, mostly of
        # one CRS (a UTM zone, a national grid), and each call costs a millisecond or two of setup.
        by_crs: dict[str, dict[int, list[TileEntry]]] = {}
        for tile in tiles:
            if tile.id not in self._quads:
                self._quads[tile.id] = self._boxes[tile.id] = None
                by_crs.setdefault(tile.raster.crs_wkt, {}).setdefault(tile.raster.id, []).append(tile)
        for crs_wkt, by_raster in by_crs.items():
            group = [tile for raster_tiles in by_raster.values() for tile in raster_tiles]
            corners = [window_corner_xy(raster_tiles[0].raster.transform, [t.window for t in raster_tiles])
                       for raster_tiles in by_raster.values()]
            quads = corner_quads(crs_wkt, np.concatenate([xs for xs, _ in corners]),
                                 np.concatenate([ys for _, ys in corners]))
            if quads is None:
                continue
            boxes = np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)
            for i, tile in enumerate(group):
                self._quads[tile.id], self._boxes[tile.id] = quads[i], boxes[i]

    def overlaps_query(self, tile: TileEntry, where: QueryArea) -> bool:
        """Whether a tile shares area with the query box: in pixels on its raster, else on the ground."""
        if tile.raster.path == where.raster:
            return window_iou(tile.window, where.window) > 0
        quad = self._quads[tile.id]
        if quad is None or where.ground is None:
            return False
        box = np.concatenate([where.ground.min(axis=0), where.ground.max(axis=0)])
        return boxes_may_overlap(self._boxes[tile.id], box) and ground_overlaps(quad, where.ground)

    def suppresses(self, better: TileEntry, tile: TileEntry, nms_iou: float) -> bool:
        """Whether `tile` is the place of a `better` hit again: IoU above nms_iou, or more than NMS_SHARED
        of the smaller of the two shared. By pixels on one raster, else on the ground (never where either
        has no CRS)."""
        if better.raster.id == tile.raster.id:
            inter, area_a, area_b = _window_overlap(better.window, tile.window)
        else:
            qa, qb = self._quads[better.id], self._quads[tile.id]
            if qa is None or qb is None or not boxes_may_overlap(self._boxes[better.id],
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


def _hit(rank: int, score: float, tile: TileEntry) -> Hit:
    """A kept candidate as a Hit: its tile's corners in its raster's CRS, and how the raster was fed."""
    xs, ys = window_corners(tile.raster.transform, tile.window)
    raster = tile.raster
    return Hit(rank=rank, score=float(score), raster=raster.path, window=tuple(tile.window),
               crs_wkt=raster.crs_wkt, polygon=list(zip(xs, ys)), bounds_4326=tuple(tile.bounds_4326),
               bands=raster.bands, stretch=raster.stretch, tile_id=int(tile.id))
