"""Standing searches by change example and by image (issue 23 item 4), end to end as a user runs them: `rsir
change --like ... --save-as`, then `rsir index build` adding a raster of a later date ranks only the pair that
raster makes; `rsir search --image ... --save-as`, then a build reports the new raster's hits. Real imagery
(tests/core/change_data.py), the bundled model, real indexes and files."""
import json
import re

import pytest
from osgeo import ogr

from tests.conftest import DEFAULT_MODEL, town_pixels, write_raster
from tests.core.change_data import (
    AT_A,
    AT_B,
    RIVER_A,
    RIVER_B,
    TILE,
    before_index,
    crop_pixels,
    pasted,
    window_box,
    write_after,
)
from tests.core.test_cli import rsir
from tests.core.test_standing import hits_in, write_other_crop

TILING = ("--tile-size", str(TILE), "--stride", "48")


def places_in(path):
    """(envelope (xmin, ymin, xmax, ymax), before, after) of each place of a change file, by rank."""
    source = ogr.Open(str(path))
    layer = source.GetLayerByName("rsir_changes")
    rows = []
    for feature in sorted(layer, key=lambda f: f.GetField("rank")):
        xmin, xmax, ymin, ymax = feature.GetGeometryRef().GetEnvelope()
        rows.append(((xmin, ymin, xmax, ymax), feature.GetField("before"), feature.GetField("after")))
    source = None
    return rows


def share(a, b) -> float:
    """The area two boxes (xmin, ymin, xmax, ymax) share, as a fraction of b's."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0) / ((b[2] - b[0]) * (b[3] - b[1]))


@pytest.mark.slow
def test_a_saved_search_by_change_ranks_only_the_pair_a_later_raster_makes(tmp_path):
    index, before = before_index(tmp_path, DEFAULT_MODEL)
    pixels = crop_pixels()[0]
    one = write_after(tmp_path / "after_one.tif", pasted(pixels, (RIVER_A, AT_A)))
    like = f"{before}:{','.join(map(str, window_box(before, (*AT_A, TILE, TILE))))}"
    hotspots = rsir("change", index, "--before", before, "--after", one, "--save-as", "rivers", check=False)
    assert hotspots.returncode == 1 and "give --like" in hotspots.stderr
    saved = rsir("change", index, "--before", before, "--after", one, "--like", like, "-k", "3",
                 "--save-as", "rivers")
    assert "search saved as 'rivers'" in saved.stderr
    record = json.loads((index / "searches" / "rivers.json").read_text())
    assert record["kind"] == "change" and record["scoring"] == "cosine" and len(record["change"]["pairs"]) == 1
    assert [example["raster"] for example in record["examples"]] == [str(before)] and record["areas"]
    taken = rsir("change", index, "--before", before, "--after", one, "--like", like, "--save-as", "rivers",
                 check=False)
    assert taken.returncode == 1 and "a saved search of that name exists" in taken.stderr

    # A later date indexed: river pasted at A (the example's place, left out) and at B (a change like it)
    later = write_after(tmp_path / "after_both.tif", pasted(pixels, (RIVER_A, AT_A), (RIVER_B, AT_B)))
    built = rsir("index", "build", index, before, later, *TILING, "--model", DEFAULT_MODEL)
    found = re.search(r"(\d+) new hits? for 'rivers'", built.stdout)
    assert found and int(found.group(1)) == 3, built.stdout
    places = places_in(index / "searches" / "rivers.new.gpkg")
    assert len(places) == 3
    assert {(b, a) for _, b, a in places} == {(str(before), str(later))}  # never the pair it was saved on
    block_a, block_b = (window_box(before, (*at, TILE, TILE)) for at in (AT_A, AT_B))
    assert share(places[0][0], block_b) > 0.25
    assert all(share(envelope, block_a) < 0.01 for envelope, _, _ in places)
    listed = rsir("searches", "list", index)
    assert listed.stdout.startswith("rivers\tchange, cosine, k=3") and "rivers.new.gpkg" in listed.stdout
    record = json.loads((index / "searches" / "rivers.json").read_text())
    assert len(record["change"]["pairs"]) == 2 and len(record["seen"]) == 2

    # Nothing new: no line, and the new hits stay for the analyst
    again = rsir("index", "build", index, before, later, *TILING, "--model", DEFAULT_MODEL)
    assert "rivers" not in again.stdout
    assert len(places_in(index / "searches" / "rivers.new.gpkg")) == 3


def test_an_image_search_saved_reports_the_hits_of_a_raster_added_after(tmp_path, tiny_model):
    """`rsir search --image FILE --save-as`: the image's embedding is kept; the next build ranks only the
    raster it added."""
    from tests.conftest import write_town_crop

    raster, index = write_town_crop(tmp_path), tmp_path / "idx"
    tiling = (*TILING, "--model", tiny_model)
    rsir("index", "build", index, raster, *tiling)
    town, profile = town_pixels()
    image = write_raster(tmp_path / "query.tif", town[:, 300:396, 600:696].copy(), crs=profile["crs"],
                         transform=profile["transform"])
    found = rsir("search", index, "--image", image, "-k", "3", "--save-as", "roofs")
    assert len(json.loads(found.stdout)["features"]) == 3 and "search saved as 'roofs'" in found.stderr
    assert json.loads((index / "searches" / "roofs.json").read_text())["kind"] == "image"

    other = write_other_crop(tmp_path)
    built = rsir("index", "build", index, raster, other, *tiling)
    assert "3 new hits for 'roofs'" in built.stdout
    assert {row[2] for row in hits_in(index / "searches" / "roofs.new.gpkg")} == {str(other)}
    assert rsir("searches", "list", index).stdout.startswith("roofs\timage, cosine, k=3")


def test_a_change_record_that_does_not_match_its_kind_is_skipped_with_one_line(tmp_path, tiny_model):
    """searches/*.json is untrusted: a box search calling itself a search by change (no change record), and a
    change record on a box search, are each one line of the build's summary; the build stands."""
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box
    from rsir_qgis_plugin.core.standing import save_search
    from tests.conftest import write_town_crop
    from tests.core.test_standing import box_of, build

    raster, index = write_town_crop(tmp_path), tmp_path / "idx"
    build(index, [raster], tiny_model)
    params = SearchParams(k=3)
    result = search_box(index, raster, box_of(raster, 96, 96, 96), None, params)
    for name in ("no record", "stray record"):
        save_search(index, name, result, params)
    edits = {"no record": {"kind": "change"},
             "stray record": {"change": {"size": 1.0, "pairs": [], "other_pairs": True, "min_coverage": 0.95}}}
    for name, edit in edits.items():
        path = index / "searches" / f"{name}.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | edit))
    summary = build(index, [raster, write_other_crop(tmp_path)], tiny_model)
    problems = {report.name: report.problem for report in summary.standing}
    assert "kind 'change' without a change record" in problems["no record"]
    assert "kind 'box' with a change record" in problems["stray record"]
    assert summary.tiles_total > 49 and not summary.failed
