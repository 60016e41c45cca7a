"""Settings of a search through time (change hot spots, search by change example): the only link between a
user interface (CLI, QGIS task, Processing algorithm, a standing search) and the change engine."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .params import DEVICES, SearchParams

# A place whose footprint lies less than this fraction on the after raster is not compared: its after tile
# would be a stretched sliver. 0.95 still takes the edge tiles of two dates whose grids are offset by a
# pixel or two (NAIP 2009 and 2020 of one quarter quad differ by 1 m on a 5 m grid).
MIN_AFTER_COVERAGE = 0.95
HOTSPOT_SCORES = ("change", "unusual")


@dataclass(frozen=True)
class ChangeParams:
    """How places of a pair of dates are compared and ranked.

    The places are the indexed tiles of the before raster(s); the after raster is read on each one's
    ground footprint. Hot spots score 1 - cosine(before, after) (0 no change, up to 2), or with hotspots
    "unusual" how unlike the after date of the places that looked like it before a place's after date is
    (core/change_scores.unusual_change: it discounts what every place of a kind went through, such as a
    season or a sensor's colours); a search by
    change example scores the cosine between the places' change vectors (after - before, normalised)
    and the examples' (Rocchio), or, with 2+ positive and 2+ negative examples, a logistic regression's
    probability.
    """

    k: int = 20
    hotspots: str = "change"  # how hot spots are scored: "change" or "unusual" (see above)
    neighbours: int = 10  # "unusual": places that looked alike before whose after date is the expected one
    nms_iou: float = 0.3  # places overlapping a better one more than this are thinned (on the ground)
    min_score: float | None = None
    exclude_example_overlap: bool = True  # a search by change leaves out the places overlapping an example
    other_pairs: bool = True  # a search by change also ranks the index's other stored pairs (INDEX/pairs)
    min_coverage: float = MIN_AFTER_COVERAGE
    batch_size: int = 32  # after tiles embedded at once
    device: str = "auto"
    model_path: Path | None = None  # None: the model the index was built with

    def __post_init__(self):
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if self.hotspots not in HOTSPOT_SCORES:
            raise ValueError(f"hotspots must be one of {', '.join(HOTSPOT_SCORES)}, got '{self.hotspots}'")
        if self.neighbours < 1:
            raise ValueError("neighbours must be at least 1")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError("nms_iou must be in (0, 1]")
        if not 0.0 < self.min_coverage <= 1.0:
            raise ValueError("min_coverage must be in (0, 1]")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got '{self.device}'")

    def ranking(self) -> SearchParams:
        """The settings core.ranking.rank() reads (k, NMS, minimum score, overlap exclusion)."""
        return SearchParams(k=self.k, nms_iou=self.nms_iou, min_score=self.min_score,
                            exclude_query_overlap=self.exclude_example_overlap, device=self.device,
                            model_path=self.model_path)
