"""`rsir review`: a map file's sample written to mark, marked in the file as a user would (OGR), the
estimate printed and the marks written as labels that `rsir search --labels` reads; bad files are one line."""
from __future__ import annotations

import json

import pytest
import rasterio
from osgeo import ogr

from rsir_qgis_plugin.core.labels_io import read_labels
from rsir_qgis_plugin.core.map_io import write_map
from rsir_qgis_plugin.core.match_map import MappedPolygon, MatchMap
from rsir_qgis_plugin.core.review import Stratum, estimate_precision
from rsir_qgis_plugin.core.review_io import REVIEW_LAYER, read_review
from tests.conftest import write_town_crop
from tests.core.test_cli import one_error_line, rsir

TILE = 64  # pixels


@pytest.fixture(scope="module")
def map_file(tmp_path_factory):
    return write_tile_map(tmp_path_factory.mktemp("review_cli"))


def write_tile_map(folder):
    """folder/map.gpkg: a map of 30 one-tile polygons on a real raster (folder/town_crop.tif), scores
    0.50..0.79 by map id; returns (map, raster)."""
    raster = write_town_crop(folder)
    with rasterio.open(raster) as src:
        transform, crs = src.transform, src.crs.to_wkt()
    polygons = []
    for number in range(30):
        col, row = (number % 6) * TILE, (number // 6) * TILE
        corners = [transform * xy for xy in ((col, row), (col + TILE, row), (col + TILE, row + TILE),
                                             (col, row + TILE))]
        polygons.append(MappedPolygon(number + 1, str(raster), (corners,), crs, 0.5 + number / 100,
                                      0.5 + number / 100, 1, 6.4 * 6.4))
    match_map = MatchMap(tuple(polygons), threshold=0.5, labels=str(folder / "l.gpkg"), index=str(folder / "idx"),
                         model="tiny")
    return write_map(match_map, folder / "map.gpkg"), raster


def mark(path, rule) -> None:
    """Fill field `relevant` of the sample file as a user does in a GIS: rule(map_id) -> 'yes'/'no'/''."""
    source = ogr.Open(str(path), 1)
    layer = source.GetLayerByName(REVIEW_LAYER) or source.GetLayer(0)
    for feature in layer:
        feature.SetField("relevant", rule(feature.GetField("map_id")))
        layer.SetFeature(feature)
    source = None


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_draw_mark_estimate_and_write_labels(map_file, tmp_path, suffix):
    path, raster = map_file
    sample = tmp_path / f"sample{suffix}"
    done = rsir("review", path, "--sample", 12, "--seed", 4, "--out", sample)
    assert "12 of 30 polygons" in done.stderr and "--marked" in done.stderr
    again = tmp_path / f"again{suffix}"
    rsir("review", path, "--sample", 12, "--seed", 4, "--out", again)
    drawn = read_review(sample)
    assert [i.map_id for i in drawn.items] == [i.map_id for i in read_review(again).items]  # seeded
    assert [s.size for s in drawn.strata] == [10, 10, 10] and drawn.marked == 0
    assert {i.map_id for i in drawn.items if i.stratum == 3} <= set(range(21, 31))  # the best scores
    assert "no polygon is marked yet" in one_error_line(rsir("review", "--marked", sample, check=False))

    mark(sample, lambda map_id: "yes" if map_id % 3 else "no")
    labels = tmp_path / "labels.gpkg"
    done = rsir("review", "--marked", sample, "--labels-out", labels)
    reviewed = [sum(i.stratum == h for i in drawn.items) for h in (1, 2, 3)]
    relevant = [sum(i.stratum == h and i.map_id % 3 != 0 for i in drawn.items) for h in (1, 2, 3)]
    want = estimate_precision([Stratum(h, 0, 1, 10) for h in (1, 2, 3)], reviewed, relevant)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"precision {want.precision:.2f} (95 % interval {want.low:.2f}-{want.high:.2f}) "
                               "from 12 reviewed polygons of 30")
    assert lines[3].startswith("stratum 3 (score 0.700-0.790, 10 polygons)")
    back = read_labels(labels)
    assert len(back.boxes) == 12 and {b.raster for b in back.boxes} == {str(raster)}
    assert sum(b.positive for b in back.boxes) == sum(relevant)
    for item in drawn.items:  # each tile comes back as exactly that tile, labelled as marked
        assert any(b.bbox == pytest.approx(item.bbox, abs=1e-6) and b.positive == bool(item.map_id % 3)
                   for b in back.boxes)


def test_part_marked_samples_and_bad_files_are_one_line(map_file, tmp_path):
    path, _ = map_file
    sample = tmp_path / "s.geojson"
    rsir("review", path, "--sample", 9, "--seed", 1, "--out", sample)
    mark(sample, lambda map_id: "yes" if map_id > 20 else "")
    line = one_error_line(rsir("review", "--marked", sample, check=False))
    assert "stratum 1 (score 0.500-0.590, 10 polygons) has no reviewed polygon" in line
    mark(sample, lambda map_id: "yes" if map_id % 2 else "maybe")
    assert "relevant is 'maybe': mark 'yes' or 'no'" in one_error_line(rsir("review", "--marked", sample,
                                                                             check=False))
    mark(sample, lambda map_id: "no")
    data = json.loads(sample.read_text())
    data["features"] = [f for f in data["features"] if f["properties"]["stratum"] != 2]
    sample.write_text(json.dumps(data))
    assert "no polygon of stratum 2 of 3" in one_error_line(rsir("review", "--marked", sample, check=False))
    assert "no such review file" in one_error_line(rsir("review", "--marked", tmp_path / "x.gpkg", check=False))
    assert "is the map itself" in one_error_line(rsir("review", path, "--sample", 3, "--out", path, check=False))
    assert "give MAP --sample N --out FILE" in one_error_line(rsir("review", path, "--out", sample, check=False))
    assert "no such map file" in one_error_line(rsir("review", tmp_path / "none.gpkg", "--sample", 3, "--out",
                                                     tmp_path / "o.gpkg", check=False))
