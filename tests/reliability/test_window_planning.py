"""Window planning streams (issue 20, item 18): a 100,000 px square raster at 32 px tiles (39 million
windows, 5.3 GB as a list of tuples) is planned without materialising its windows. Peak memory figures:
benchmarks/window_planning.py."""
from __future__ import annotations

import itertools
import pickle
import tracemalloc

import pytest

from rsir_qgis_plugin.core.tiling import Grid, WindowPlan, _strips, axis_offsets, tile_windows


def as_list(width: int, height: int, grid: Grid) -> list:
    """The windows as rsir listed them before plans: row by row, every tuple at once."""
    tile_w, tile_h = min(grid.tile_px, width), min(grid.tile_px, height)
    return [(col, row, tile_w, tile_h) for row in axis_offsets(height, grid.tile_px, grid.stride_px)
            for col in axis_offsets(width, grid.tile_px, grid.stride_px)]


def test_planning_a_huge_raster_and_reading_its_first_windows_allocates_none_of_the_rest():
    tracemalloc.start()
    try:
        plan = tile_windows(100_000, 100_000, Grid(32, 16))
        resumed = plan[12_345_678:]  # a build resumed from a checkpoint
        first = list(itertools.islice(resumed, 1000))
        strips = list(itertools.islice(_strips(resumed, 32), 3))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(plan) == 6249 ** 2 == 39_050_001 and len(resumed) == len(plan) - 12_345_678
    assert isinstance(resumed, WindowPlan) and first[0] == plan[12_345_678] and first[1] == plan[12_345_679]
    stripped = [w for strip in strips for w in strip]
    assert stripped == list(itertools.islice(resumed, len(stripped)))
    assert peak < 20 << 20, peak  # the list took 4.5 GB; the plan holds two axes of 6249 offsets
    assert len(pickle.dumps(resumed)) < 200_000  # what a Dask worker is sent


@pytest.mark.parametrize("width, height, grid", [(1000, 600, Grid(224, 200)), (100, 80, Grid(224, 112)),
                                                 (384, 384, Grid(96, 96)), (1000, 97, Grid(32, 7))])
def test_a_plan_is_the_list_it_replaces_whole_sliced_and_indexed(width, height, grid):
    plan, listed = tile_windows(width, height, grid), as_list(width, height, grid)
    assert plan == listed and list(plan) == listed and len(plan) == len(listed)
    for start in range(len(listed) + 2):
        assert list(plan[start:]) == listed[start:] and len(plan[start:]) == len(listed[start:])
        assert list(plan[start:start + 5]) == listed[start:start + 5]
    assert [plan[i] for i in range(-len(listed), len(listed))] == listed + listed
    assert plan[::2] == listed[::2]
    with pytest.raises(IndexError):
        plan[len(listed)]
