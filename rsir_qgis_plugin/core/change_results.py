"""What a search through time returns: ranked places with both dates, and what each pair of dates cost.

Shared by the change entry points (core/change_rank.py), the writer of change files (core/changes_io.py)
and the front ends (CLI, QGIS tasks, standing searches).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .examples import Feedback
from .results import Hit


@dataclass(frozen=True)
class ChangeHit:
    """A place ranked by its change: the before raster's tile (`hit`: polygon, window, tile id, and the
    before raster as hit.raster) and where it was read on the after raster."""

    hit: Hit  # hit.score: see ChangeResult.scoring
    after: str  # the after raster's path
    after_window: tuple[int, int, int, int]  # col, row, width, height in the after raster's pixels
    after_crs_wkt: str
    after_bands: tuple[int, ...]  # how the after raster was fed to the model (for a thumbnail)
    after_stretch: tuple[tuple[float, float], ...] | None

    @property
    def rank(self) -> int:
        return self.hit.rank

    @property
    def score(self) -> float:
        return self.hit.score

    @property
    def before(self) -> str:
        return self.hit.raster


@dataclass(frozen=True)
class PairCounts:
    """What happened to the places of one pair of rasters."""

    before: str
    after: str
    places: int  # the before raster's indexed tiles
    compared: int  # places read at both dates
    nodata_before: int  # tiles of the before raster the index skipped (nodata or empty): never places
    nodata_after: int  # places that are nodata (or empty) at the after date: skipped
    outside: int  # places not on the after raster (less than ChangeParams.min_coverage of them): skipped
    embedded: int  # after tiles embedded by this call (0 when the pair was stored or fully reused)
    reused: int  # after tiles whose indexed embeddings were reused (the after raster indexed on the same tiles)
    stored: bool  # the after date came from the index folder's pair store (INDEX/pairs): nothing was read

    def describe(self) -> str:
        """One line for a user."""
        skipped = self.nodata_before + self.nodata_after
        how = ("stored embeddings" if self.stored else
               f"{self.embedded} embedded" + (f", {self.reused} reused from the index" if self.reused else ""))
        return (f"{self.before} -> {self.after}: {self.compared} of {self.places} places compared ({how}); "
                f"{skipped} skipped as nodata ({self.nodata_before} before, {self.nodata_after} after), "
                f"{self.outside} off the after raster")


@dataclass(frozen=True, eq=False)
class ChangeScorer:
    """How a search by change scored places, so that the places of pairs made later can be scored the same way
    (a standing search, core/standing_change.py) without the examples' rasters."""

    query: np.ndarray  # (D,) unit vector: Rocchio's change direction (cosine scoring)
    weights: np.ndarray | None  # a logistic regression's (D,) over change directions: probability scoring
    bias: float
    size: float  # the positive examples' mean |after - before|: places that changed less are damped by it
    areas: Sequence = ()  # QueryArea (core/query_step.py): the examples' places, left out
    pairs: tuple[str, ...] = ()  # the keys (core/pair_store.pair_key) of the pairs ranked


@dataclass(frozen=True)
class ChangeResult:
    hits: list[ChangeHit]
    scoring: str  # hot spots: "change" (1 - cosine of before and after, 0..2) or "unusual" (ChangeParams);
    #               search by change: "cosine" (of change vectors) or "probability" (a classifier's)
    pairs: tuple[PairCounts, ...]  # the pairs given, then the other stored pairs a search by change ranked
    crs_wkt: str  # the first before raster's CRS: where results are written by default
    provider: str
    seconds: float
    examples: Feedback | None = None  # a search by change example's boxes (LabelledBox: raster, bbox, crs, label)
    example_polygons: tuple[list[tuple[float, float]], ...] = ()  # each example's ring, in crs_wkt
    all_excluded: bool = False  # no hit because every compared place overlaps an example
    notes: tuple[str, ...] = ()
    scorer: ChangeScorer | None = None  # a search by change's: what saving it as a standing search keeps
