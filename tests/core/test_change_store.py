"""The pair store of a search through time (issue 23): the after date's embeddings kept in INDEX/pairs, used
again without embedding, replaced when a raster changes, checked when read back, never half-written by a
killed process; and the after raster's own indexed embeddings used where it is indexed on the same tiles."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rsir_qgis_plugin.core.change_params import ChangeParams
from rsir_qgis_plugin.core.change_rank import change_hotspots, search_change
from rsir_qgis_plugin.core.examples import LabelledBox
from rsir_qgis_plugin.core.pair_places import after_windows
from rsir_qgis_plugin.core.pair_store import OK, OUTSIDE, PairStoreError, load_pair, pair_name, stored_pair_files
from tests.conftest import DEFAULT_MODEL, town_pixels, write_raster
from tests.core.change_data import (
    AT_A,
    AT_B,
    RIVER_A,
    RIVER_B,
    TILE,
    before_index,
    crop_pixels,
    overlaps,
    pasted,
    window_box,
    write_after,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair(tmp_path):
    index, before = before_index(tmp_path, DEFAULT_MODEL)
    after = write_after(tmp_path / "after.tif", pasted(crop_pixels()[0], (RIVER_A, AT_A)))
    return index, before, after


def test_a_second_question_embeds_nothing_and_a_changed_raster_is_embedded_again(pair):
    index, before, after = pair
    first = change_hotspots(index, [before], [after], ChangeParams(k=3))
    assert (first.pairs[0].embedded, first.pairs[0].stored) == (49, False)
    stored = stored_pair_files(index)
    assert [p.name for p in stored] == [pair_name(str(before), str(after))]

    again = change_hotspots(index, [before], [after], ChangeParams(k=3))
    assert (again.pairs[0].embedded, again.pairs[0].stored) == (0, True)
    assert again.provider.startswith("stored embeddings")
    assert [(h.hit.window, round(h.score, 5)) for h in again.hits] == [(h.hit.window, round(h.score, 5))
                                                                         for h in first.hits]

    write_after(after, pasted(crop_pixels()[0], (RIVER_B, AT_B)))  # the file changes: the pair is stale
    changed = change_hotspots(index, [before], [after], ChangeParams(k=3))
    assert (changed.pairs[0].embedded, changed.pairs[0].stored) == (49, False)
    assert overlaps(changed.hits[0].hit.window, AT_B)
    assert stored_pair_files(index) == stored  # replaced under the same name, nothing stale left


def test_a_damaged_pair_file_is_noted_and_embedded_again(pair):
    index, before, after = pair
    change_hotspots(index, [before], [after], ChangeParams(k=3))
    path = stored_pair_files(index)[0]
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(8)  # damage inside the vectors
    path.write_bytes(bytes(data))
    result = change_hotspots(index, [before], [after], ChangeParams(k=3))
    assert result.pairs[0].embedded == 49
    assert any("checksum" in note or "unreadable" in note for note in result.notes)
    assert load_pair(path, 128).record["embedded"] == 49  # rewritten whole


@pytest.mark.parametrize("damage", ["compressed", "edited record", "other rasters"])
def test_pair_files_from_disk_are_checked(pair, damage, tmp_path):
    """A pair file is data from disk: a zip bomb's compressed members, an edited record, a file renamed to
    another pair's name are refused with a line naming the file."""
    import json
    import zipfile

    index, before, after = pair
    change_hotspots(index, [before], [after], ChangeParams(k=3))
    path = stored_pair_files(index)[0]
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    if damage == "edited record":
        record = json.loads(str(arrays["record"]))
        record["after"]["path"] = "/elsewhere.tif"
        arrays["record"] = np.array(json.dumps(record))
    target = tmp_path / ("0" * 24 + ".npz") if damage == "other rasters" else path
    (np.savez_compressed if damage == "compressed" else np.savez)(target, **arrays)
    with pytest.raises(PairStoreError) as caught:
        load_pair(target, 128)
    assert str(target) in str(caught.value) and "\n" not in str(caught.value)
    if damage == "compressed":
        assert zipfile.ZipFile(target).infolist()[0].compress_type == zipfile.ZIP_DEFLATED


def test_nothing_is_written_through_a_link_in_place_of_the_pairs_folder(pair, tmp_path):
    index, before, after = pair
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (index / "pairs").symlink_to(outside)
    result = change_hotspots(index, [before], [after], ChangeParams(k=1))
    assert result.hits[0].hit.window == (*AT_A, TILE, TILE)
    assert any("could not be kept" in note and "symbolic link" in note for note in result.notes)
    assert list(outside.iterdir()) == []


def test_an_after_raster_indexed_on_the_same_tiles_is_not_embedded_again(tmp_path):
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    index, before = before_index(tmp_path, DEFAULT_MODEL)
    after = write_after(tmp_path / "after.tif", pasted(crop_pixels()[0], (RIVER_A, AT_A)))
    build_index(BuildParams(index_dir=index, rasters=(before, after), model_path=DEFAULT_MODEL,
                            tiling=TilingParams(tile_px=TILE, stride_px=48)))
    result = change_hotspots(index, [before], [after], ChangeParams(k=3))
    counts = result.pairs[0]
    assert (counts.reused, counts.embedded, counts.compared) == (49, 0, 49)
    assert result.hits[0].hit.window == (*AT_A, TILE, TILE)
    assert result.provider.startswith("stored embeddings")


def test_search_by_change_also_ranks_the_other_stored_pairs(tmp_path):
    """Places of a pair compared earlier (a second before raster) are ranked too, unless told otherwise."""
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    index, before = before_index(tmp_path, DEFAULT_MODEL)
    town, profile = town_pixels()
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    grid = window_transform(Window(600, 600, 384, 384), profile["transform"])  # the car park, lower right
    other = write_raster(tmp_path / "other.tif", town[:, 600:984, 600:984].copy(), crs=profile["crs"],
                         transform=grid)
    other_after = write_raster(tmp_path / "other_after.tif", pasted(town[:, 600:984, 600:984], (RIVER_B, AT_B)),
                               crs=profile["crs"], transform=grid)
    build_index(BuildParams(index_dir=index, rasters=(before, other), model_path=DEFAULT_MODEL,
                            tiling=TilingParams(tile_px=TILE, stride_px=48)))
    change_hotspots(index, [other], [other_after], ChangeParams(k=1))  # stores the other pair

    after = write_after(tmp_path / "after.tif", pasted(crop_pixels()[0], (RIVER_A, AT_A)))
    example = LabelledBox(str(before), window_box(before, (*AT_A, TILE, TILE)), None, True)
    found = search_change(index, [before], [after], [example], ChangeParams(k=3))
    assert found.hits[0].before == str(other) and overlaps(found.hits[0].hit.window, AT_B)
    assert found.hits[0].after == str(other_after)
    assert [p.stored for p in found.pairs] == [False, True]
    alone = search_change(index, [before], [after], [example], ChangeParams(k=3, other_pairs=False))
    assert {hit.before for hit in alone.hits} == {str(before)} and len(alone.pairs) == 1


KILLED = """
import sys, time
from pathlib import Path
from rsir_qgis_plugin.core.change_params import ChangeParams
from rsir_qgis_plugin.core.change_rank import change_hotspots

def progress(percent, message):
    if percent > 0 and percent < 100:
        Path(sys.argv[4]).write_text(message)
        time.sleep(0.5)  # slow enough for the parent to kill it between batches

change_hotspots(sys.argv[1], [sys.argv[2]], [sys.argv[3]], ChangeParams(batch_size=4), progress)
"""


def test_a_killed_pair_embedding_leaves_nothing_half_written(pair, tmp_path):
    index, before, after = pair
    marker = tmp_path / "embedding"
    process = subprocess.Popen([sys.executable, "-c", KILLED, str(index), str(before), str(after), str(marker)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the embedding never started"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL and "after date of" in marker.read_text()
    pairs = index / "pairs"
    assert not pairs.exists() or list(pairs.iterdir()) == []  # no pair file, no temporary
    result = change_hotspots(index, [before], [after], ChangeParams(k=1))
    assert (result.pairs[0].embedded, result.hits[0].hit.window) == (49, (*AT_A, TILE, TILE))


def test_places_are_read_on_their_footprint_on_an_offset_grid():
    """A before grid of 5 m pixels and an after grid offset by 1 m (NAIP 2009 and 2020): each 64 px place is
    read as 64 px of the after raster (not 65), the edge places that fall 1 m off it still compared, and a
    place mostly off the after raster left out."""
    before = SimpleNamespace(transform=(5.0, 0.0, 485900.0, 0.0, -5.0, 5209247.0), crs_wkt="EPSG:26914")
    after = SimpleNamespace(transform=(5.0, 0.0, 485899.0, 0.0, -5.0, 5209246.0), crs_wkt="EPSG:26914",
                            width=934, height=723)
    windows = np.array([[704, 480, 64, 64], [0, 0, 64, 64], [870, 660, 64, 64], [900, 690, 64, 64]], np.int64)
    wins, state, exact = after_windows(before, after, windows, 0.95)
    assert wins[0].tolist() == [704, 480, 64, 64] and wins[1].tolist() == [0, 0, 64, 64]
    assert state.tolist() == [OK, OK, OK, OUTSIDE] and not exact.any()
    same = SimpleNamespace(transform=before.transform, crs_wkt="EPSG:26914", width=934, height=724)
    wins, state, exact = after_windows(before, same, windows[:3], 0.95)
    assert wins.tolist() == windows[:3].tolist() and exact.all()
