"""Mapping every match of a feedback search: the index's tiles scored, thresholded and dissolved into polygons.

A map is what an analyst makes of a search ("every solar farm in the county"): every live tile of the
index is scored by the feedback search's classifier (core/feedback.py), segment by segment and a batch
of vectors at a time, so memory holds a few numbers a tile and never all vectors; the tiles scoring at
least the threshold are merged, raster by raster, into polygons of touching or overlapping tiles.
"""
from __future__ import annotations

from dataclasses import dataclass

from .geometry import Ring


@dataclass(frozen=True)
class MappedPolygon:
    """One polygon of a map: touching or overlapping matched tiles of one raster, dissolved."""

    map_id: int  # 1-based, in the map's order (rasters by path, then polygons by position)
    raster: str  # the raster's path
    rings: tuple[Ring, ...]  # the exterior ring, then any holes, in crs_wkt (first point not repeated)
    crs_wkt: str  # the rings' CRS: the raster's when mapped, the file's layer CRS when read back
    score_mean: float  # mean score of its tiles
    score_max: float
    tiles: int  # matched tiles merged into it
    area_m2: float  # its area on the ground, square metres


@dataclass(frozen=True)
class MatchMap:
    """A map of matches and how it was made (recorded in the map file, core/map_io.py)."""

    polygons: tuple[MappedPolygon, ...]
    threshold: float  # tiles scoring >= threshold are matches
    labels: str  # the labels file of the feedback search
    index: str  # the index folder
    model: str  # the index's model: name and sha256
    scoring: str = "probability"  # what a score is: the classifier's "probability", or "cosine" (Rocchio)
    tiles_scored: int = 0  # live tiles of the index scored

    @property
    def tiles(self) -> int:
        return sum(polygon.tiles for polygon in self.polygons)

    @property
    def area_m2(self) -> float:
        return sum(polygon.area_m2 for polygon in self.polygons)

    def describe(self) -> str:
        """One line for the user: polygons, tiles and area."""
        return (f"{len(self.polygons)} polygon(s) of {self.tiles} matched tile(s) (of {self.tiles_scored} scored, "
                f"{self.scoring} >= {self.threshold:g}), {self.area_m2 / 1e6:.3f} km²")
