"""Where tiles lie, as arrays: which raster, which pixels, which ground; and which pairs of tiles overlap.

The rule is ranking's (core/ranking.py), vectorised for many pairs at once: two tiles of one raster
overlap when their pixel windows share pixels; tiles of two rasters when their ground quads share area
(touching edges do not count), never where either raster has no CRS. Database-side augmentation
(store/dba.py) asks it for millions of pairs, so the lon/lat boxes of the quads settle most of them and
only pairs whose boxes meet have their quads clipped.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .geometry import ground_overlaps, ground_quads


@dataclass(frozen=True)
class Footprints:
    """n tiles: raster ids (n,), pixel windows (n, 4) col/row/width/height, ground quads (n, 4, 2)
    lon/lat (NaN for a raster without a CRS) and the quads' lon/lat boxes (n, 4)."""

    rasters: np.ndarray
    windows: np.ndarray
    quads: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.rasters)

    def take(self, rows: np.ndarray) -> Footprints:
        """The footprints of the given rows, in that order (rows may repeat)."""
        return Footprints(self.rasters[rows], self.windows[rows], self.quads[rows], self.boxes[rows])


def footprints(rasters: np.ndarray, windows: np.ndarray,
               placement: Mapping[int, tuple[str, tuple[float, ...]]]) -> Footprints:
    """Footprints of tiles given by raster id and window; `placement` maps each raster id to its
    (CRS WKT, affine transform). One reprojection call per raster."""
    rasters = np.asarray(rasters, dtype=np.int64).reshape(-1)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    quads = np.full((len(rasters), 4, 2), np.nan)
    for raster in np.unique(rasters):
        rows = np.flatnonzero(rasters == raster)
        crs_wkt, transform = placement[int(raster)]
        found = ground_quads(crs_wkt, tuple(transform), windows[rows])
        if found is not None:
            quads[rows] = found
    with np.errstate(invalid="ignore"):
        boxes = np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)
    return Footprints(rasters, windows, quads, boxes)


def boxes_may_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether (lon_min, lat_min, lon_max, lat_max) boxes may share area, pairwise over the last axis,
    longitudes taken modulo 360 (quads are unwrapped each on its own); False for boxes with NaN, whose
    quads overlap nothing."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lat = (a[..., 1] < b[..., 3]) & (b[..., 1] < a[..., 3])  # also False for NaN
        lon = np.zeros(lat.shape, bool)
        for shift in (-360.0, 0.0, 360.0):
            lon |= (a[..., 0] < b[..., 2] + shift) & (b[..., 0] + shift < a[..., 2])
    return lat & lon


def windows_share_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether pixel windows (col, row, width, height) share at least one pixel, pairwise over rows."""
    ix = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    iy = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    return (ix > 0) & (iy > 0)


def pairs_overlap(a: Footprints, b: Footprints) -> np.ndarray:
    """Whether tile a[i] overlaps tile b[i], for every i (a and b of equal length)."""
    same = a.rasters == b.rasters
    overlap = same & windows_share_pixels(a.windows, b.windows)
    for i in np.flatnonzero(~same & boxes_may_overlap(a.boxes, b.boxes)):
        overlap[i] = ground_overlaps(a.quads[i], b.quads[i])
    return overlap
