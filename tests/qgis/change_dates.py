"""The pairs of dates the QGIS tests of search through time share (tests/core/change_data.py's rasters): the
town crop indexed with the bundled model (whose embeddings move when a tile changes; the tiny test model's
barely do), and after dates with river water pasted over roofs."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from tests.conftest import DEFAULT_MODEL
from tests.core.change_data import AT_A, AT_B, RIVER_A, RIVER_B, before_index, crop_pixels, pasted, write_after


class Dates(NamedTuple):
    index: Path
    before: Path
    both: Path  # blocks A and B pasted (for a search by A's change)
    one: Path  # block A pasted (A is the only hot spot)


def make_dates(folder: Path) -> Dates:
    index, before = before_index(folder, DEFAULT_MODEL)
    pixels, _ = crop_pixels()
    both = write_after(folder / "after.tif", pasted(pixels, (RIVER_A, AT_A), (RIVER_B, AT_B)))
    one = write_after(folder / "after_one.tif", pasted(pixels, (RIVER_A, AT_A)))
    return Dates(index, before, both, one)
