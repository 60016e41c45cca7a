"""The analyst's examples for relevance feedback: boxes marked good or bad, and one session's set of them.

Plain data with no engine behind it, so the labels readers and writers (label_records, labels_io, the
plugin's layer) build and merge examples without loading the search engine.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelledBox:
    """A box marked by the analyst: on any raster (indexed or not), in `crs` (None: the raster's CRS)."""

    raster: str
    bbox: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    crs: str | None
    positive: bool

    @property
    def label(self) -> str:
        return "positive" if self.positive else "negative"

    @property
    def place_key(self) -> tuple:
        """What two labels of the same box share (whatever their labels)."""
        return self.raster, tuple(self.bbox), self.crs

    def same_place(self, other: LabelledBox) -> bool:
        """Whether two labels are for the same box (whatever their labels)."""
        return self.place_key == other.place_key


@dataclass(frozen=True)
class Feedback:
    """The examples of one refinement session, in the order they were given."""

    boxes: tuple[LabelledBox, ...] = ()

    def positives(self) -> tuple[LabelledBox, ...]:
        return tuple(box for box in self.boxes if box.positive)

    def negatives(self) -> tuple[LabelledBox, ...]:
        return tuple(box for box in self.boxes if not box.positive)

    def with_box(self, box: LabelledBox) -> Feedback:
        """These examples plus `box`; an earlier label of the same box is replaced (the latest wins)."""
        return Feedback(tuple(b for b in self.boxes if not b.same_place(box)) + (box,))

    def merged(self, other: Feedback) -> Feedback:
        """These examples, then `other`'s (whose labels win where both label the same box).

        What with_box() box by box gives, in one pass: with_box rebuilt the whole tuple for each box,
        so a labels file of 8,000 features took minutes and one of 200,000 never finished.
        """
        latest: dict[tuple, LabelledBox] = {}
        for box in other.boxes:
            latest.pop(box.place_key, None)  # a box given again moves to where it was given last
            latest[box.place_key] = box
        kept = tuple(box for box in self.boxes if box.place_key not in latest)
        return Feedback(kept + tuple(latest.values()))

    def latest(self) -> Feedback:
        """One label per box, the latest given."""
        return Feedback().merged(self)
