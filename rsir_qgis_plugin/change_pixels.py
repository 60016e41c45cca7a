"""Before/after thumbnails' pixels of a search through time, read in the change task's worker thread (no Qt).

Each place is read twice with thumbnail_pixels.read_thumbnails: its before tile (the ChangeHit's Hit) and
where it lies on the after raster (an AfterTile, which reads like a Hit). gui/change_panel.py makes the
QImages on the UI thread.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from .thumbnail_pixels import THUMBNAIL_PX, read_thumbnails


@dataclass(frozen=True)
class AfterTile:
    """A place's window on the after raster, with what read_thumbnails reads of a Hit."""

    rank: int
    raster: str
    window: tuple[int, int, int, int]
    bands: tuple[int, ...]
    stretch: tuple[tuple[float, float], ...] | None


def after_tiles(changes: Sequence) -> list[AfterTile]:
    """The after side of core ChangeHits."""
    return [AfterTile(c.rank, c.after, c.after_window, c.after_bands, c.after_stretch) for c in changes]


def read_change_thumbnails(changes: Sequence, size: int = THUMBNAIL_PX,
                           is_cancelled: Callable[[], bool] | None = None) -> dict[int, tuple]:
    """rank -> (before, after): (h, w, 3) uint8 arrays, None for a side that could not be read."""
    before = read_thumbnails([c.hit for c in changes], size, is_cancelled)
    after = read_thumbnails(after_tiles(changes), size, is_cancelled)
    return {c.rank: (before.get(c.rank), after.get(c.rank)) for c in changes
            if c.rank in before or c.rank in after}
