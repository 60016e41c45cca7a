"""What a search returns: ranked hits (indexed tiles with their place on the ground) and how they were found.

Shared by box, image and feedback searches, and read by the writers of hits (hits_io) and the plugin.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .examples import Feedback
from .geometry import Ring


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


@dataclass(frozen=True, eq=False)
class Scorer:
    """How a search scored the index's tiles, so that tiles added later can be scored the same way (a
    standing search, core/standing.py) without the query's rasters or the model."""

    query: np.ndarray  # (D,) unit vector: Hit.score is the cosine with it
    weights: np.ndarray | None = None  # a feedback classifier's (D,): probability sigmoid(v.w + bias)
    bias: float = 0.0
    augmented: bool = False  # tiles scored by the index's DBA search vectors where it has them
    areas: Sequence = ()  # QueryArea (core/query_step.py): hits overlapping them are left out


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
    feedback: Feedback | None = None  # the labelled examples of a feedback search (core/feedback.py)
    notes: tuple[str, ...] = ()  # what a user should know about how the query was taken (image scale)
    scorer: Scorer | None = None  # what saving the search keeps (core/standing.py)
