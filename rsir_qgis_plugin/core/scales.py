"""The ground size of the indexed tiles, raster by raster, and the scales a query is embedded at.

A tile's ground size (the side of its footprint, metres) follows from its raster's transform and CRS and
its pixel window, so the catalog needs no column for it and indexes of every rsir have it. The tiles of one
raster share a size (its grid), so it is kept per raster, from the raster's first tile. Rasters whose
sizes are within SCALE_GROUP_RATIO of a group's smallest form one scale group: a query is embedded once a
group (core/query_step.py, core/query_image.py), and each raster's tiles are ranked against the query at
their group's scale (core/ranking.py: by_scale). Rasters without a ground size (no CRS, or a local grid)
belong to no group.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import RasterError
from .store import IndexReader
from .tiling import pixel_size_metres

# Rasters whose tiles' ground sizes are within this ratio of a group's smallest are queried at one scale:
# the model tolerates that much (random resized crops in training), and each group costs one embedding.
# Imagery of one source (0.3 m and 0.5 m orthophotos, a mosaic of neighbouring scenes) stays one group,
# so the common index is searched exactly as before scale-aware search.
SCALE_GROUP_RATIO = 1.5


@dataclass(frozen=True)
class ScaleGroup:
    """Rasters whose tiles cover about one ground size: `size` (metres, the median over their tiles)."""

    size: float
    rasters: frozenset[int]
    tiles: int


@dataclass(frozen=True)
class TileScales:
    """Per raster id: its tiles' ground size (metres; rasters without one absent) and tile count; and
    the index's tile id ranges (a raster's tiles are consecutive ids) to find a tile's raster by its id."""

    sizes: dict[int, float]
    counts: dict[int, int]
    starts: np.ndarray  # (r,) first tile id of each raster, ascending
    ends: np.ndarray  # (r,) one past its last
    raster_ids: np.ndarray  # (r,) the raster of each range

    def rasters_of(self, ids: np.ndarray) -> np.ndarray:
        """The raster id of each tile id (-1 for an id in no raster's range)."""
        ids = np.asarray(ids, dtype=np.int64)
        at = np.searchsorted(self.starts, ids, side="right") - 1
        inside = (at >= 0) & (ids < self.ends[np.maximum(at, 0)])
        return np.where(inside, self.raster_ids[np.maximum(at, 0)], -1)


# One reading per open reader: the first tiles of every raster are one catalog query, but a query asks
# several times (groups, image plan, ranking). Weak keys: a reader released by the cache is forgotten.
_SCALES: weakref.WeakKeyDictionary[IndexReader, TileScales] = weakref.WeakKeyDictionary()


def tile_scales(reader: IndexReader) -> TileScales:
    """The ground size of each live raster's tiles and the index's tile id ranges."""
    known = _SCALES.get(reader)
    if known is not None:
        return known
    sizes, counts, ranges = {}, {}, []
    for tile in reader.tiles(reader.first_tile_ids()):
        raster = tile.raster
        counts[raster.id] = raster.tile_count
        ranges.append((tile.id, tile.id + raster.tile_count, raster.id))
        size = tile_ground_size(raster, tile.window)
        if size is not None:
            sizes[raster.id] = size
    ranges.sort()
    table = np.array(ranges, dtype=np.int64).reshape(-1, 3)
    scales = TileScales(sizes, counts, table[:, 0], table[:, 1], table[:, 2])
    _SCALES[reader] = scales
    return scales


def tile_ground_size(raster, window: tuple[int, int, int, int]) -> float | None:
    """The side of a tile's footprint in metres (of a square of its area), None without a ground size."""
    if not raster.crs_wkt:
        return None
    try:
        pixel = pixel_size_metres(raster)
    except RasterError:
        return None
    return math.sqrt(window[2] * window[3]) * pixel


def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The value at half the total weight, values sorted (a raster counts as many times as it has tiles)."""
    order = np.argsort(values)
    ordered, cumulative = np.asarray(values)[order], np.cumsum(np.asarray(weights, float)[order])
    return float(ordered[np.searchsorted(cumulative, cumulative[-1] / 2)])


def scale_groups(reader: IndexReader) -> tuple[ScaleGroup, ...]:
    """The index's scale groups, smallest first; () when no raster has a ground size."""
    scales = tile_scales(reader)
    groups: list[list[int]] = []
    for raster in sorted(scales.sizes, key=scales.sizes.get):
        if groups and scales.sizes[raster] <= SCALE_GROUP_RATIO * scales.sizes[groups[-1][0]]:
            groups[-1].append(raster)
        else:
            groups.append([raster])
    return tuple(ScaleGroup(size=weighted_median([scales.sizes[r] for r in members],
                                                 [scales.counts[r] for r in members]),
                            rasters=frozenset(members), tiles=sum(scales.counts[r] for r in members))
                 for members in groups)


def nearest_group(groups: Sequence[ScaleGroup], size: float) -> ScaleGroup:
    """The group whose ground size is closest to `size` by ratio."""
    return min(groups, key=lambda group: abs(math.log(group.size / size)))


@dataclass(frozen=True)
class ScaleWindow:
    """A query's pixel window to embed at one scale, and the rasters ranked against that embedding (None:
    every raster no other window of the query names: the query's own scale and rasters of unknown size)."""

    window: tuple[int, int, int, int]
    rasters: frozenset[int] | None = None


def centred_window(width: int, height: int, around: tuple[int, int, int, int],
                   side_px: float) -> tuple[int, int, int, int]:
    """A window of side_px pixels (at most the raster) centred on `around`'s centre, moved inside the
    raster where it would cross an edge (so it keeps its ground size rather than its centre)."""
    w, h = min(width, max(1, round(side_px))), min(height, max(1, round(side_px)))
    cx, cy = around[0] + around[2] / 2, around[1] + around[3] / 2
    col = min(max(0, round(cx - w / 2)), width - w)
    row = min(max(0, round(cy - h / 2)), height - h)
    return col, row, w, h
