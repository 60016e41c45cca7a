"""`rsir change` end to end in a subprocess, as a user runs it (issue 23): hot spots to stdout and to a
GeoPackage, a search by change example, a second question that embeds nothing, and one-line refusals."""
import json

import pytest
import rasterio
from affine import Affine

from tests.conftest import DEFAULT_MODEL
from tests.core.change_data import AT_A, AT_B, RIVER_A, RIVER_B, TILE, before_index, crop_pixels, pasted, window_box
from tests.core.change_data import write_after as write_after_raster
from tests.core.test_cli import rsir


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("change-cli")
    index, before = before_index(folder, DEFAULT_MODEL)
    after = write_after_raster(folder / "after.tif", pasted(crop_pixels()[0], (RIVER_A, AT_A), (RIVER_B, AT_B)))
    return index, before, after


def test_hot_spots_then_a_search_by_change_end_to_end(pair, tmp_path):
    from osgeo import ogr

    index, before, after = pair
    found = rsir("change", index, "--before", before, "--after", after, "-k", "3")
    collection = json.loads(found.stdout)
    assert collection["scoring"] == "change"
    assert [f["properties"]["rank"] for f in collection["features"]] == [1, 2, 3]
    assert set(collection["features"][0]["properties"]) == {"rank", "score", "before", "after"}
    assert collection["features"][0]["properties"]["after"] == str(after)
    assert "49 of 49 places compared (49 embedded)" in found.stderr

    out = tmp_path / "changes.gpkg"
    like = f"{before}:{','.join(map(str, window_box(before, (*AT_A, TILE, TILE))))}"
    searched = rsir("change", index, "--before", before, "--after", after, "--like", like, "-k", "2", "--out", out)
    assert "(stored embeddings)" in searched.stderr and f"2 places written to {out}" in searched.stderr
    source = ogr.Open(str(out))
    places, examples = source.GetLayerByName("rsir_changes"), source.GetLayerByName("rsir_change_examples")
    assert places.GetFeatureCount() == 2 and examples.GetFeatureCount() == 1
    first = places.GetNextFeature()
    xmin, xmax, ymin, ymax = first.GetGeometryRef().GetEnvelope()
    col0, row0 = AT_B
    bxmin, bymin, bxmax, bymax = window_box(before, (col0, row0, TILE, TILE))
    assert xmin < bxmax and bxmin < xmax and ymin < bymax and bymin < ymax  # the second river block
    assert first.GetField("before") == str(before) and first.GetField("after") == str(after)
    assert examples.GetNextFeature().GetField("label") == "positive"


def test_refusals_are_one_line(pair, tmp_path):
    index, before, after = pair
    elsewhere = tmp_path / "elsewhere.tif"
    pixels, _ = crop_pixels()
    with rasterio.open(before) as src:
        far = Affine(*src.transform[:6]) * Affine.translation(0, 1_000_000)
    write_after_raster(elsewhere, pixels, transform=far)
    refused = rsir("change", index, "--before", before, "--after", elsewhere, check=False)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsir: error: ") and "do not overlap" in lines[0]

    unlike_only = rsir("change", index, "--before", before, "--after", after, "--unlike", f"{before}:0,0,1,1",
                       check=False)
    assert unlike_only.returncode == 1 and "give at least one --like" in unlike_only.stderr
    bad_box = rsir("change", index, "--before", before, "--after", after, "--like", f"{before}:1,2,3",
                   check=False)
    assert bad_box.returncode == 1 and "expected 4 numbers" in bad_box.stderr
    inside = rsir("change", index, "--before", before, "--after", after, "--out", index / "x.geojson", check=False)
    assert inside.returncode == 1 and "inside the index folder" in inside.stderr
