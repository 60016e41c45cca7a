"""Mapping every match (core/match_map.py): the dissolve against OGR's own union of the tiles, areas, and
the scores of a real index's every tile against what the feedback search reports."""
from __future__ import annotations

import math

import numpy as np
import pytest
from osgeo import ogr

from rsir_qgis_plugin.core.errors import SearchCancelled
from rsir_qgis_plugin.core.feedback import Feedback, search_feedback
from rsir_qgis_plugin.core.geometry import crs_from
from rsir_qgis_plugin.core.labels_io import write_labels
from rsir_qgis_plugin.core.map_io import read_map, write_map
from rsir_qgis_plugin.core.match_map import (
    MapParams,
    MapSummary,
    TileScores,
    dissolve,
    map_matches,
    score_tiles,
    summarise,
)
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.store import RasterEntry


def _entry(raster_id: int, crs: str, transform: tuple) -> RasterEntry:
    return RasterEntry(id=raster_id, path=f"/data/r{raster_id}.tif", size=0, mtime_ns=0,
                       crs_wkt=crs_from(crs).to_wkt(), width=1024, height=1024, transform=transform,
                       bands=(1, 2, 3), stretch=None, tiling={}, shard="", tile_count=0, skipped=0)


def _ogr(rings):
    polygon = ogr.Geometry(ogr.wkbPolygon)
    for ring in rings:
        linear = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in [*ring, ring[0]]:
            linear.AddPoint_2D(x, y)
        polygon.AddGeometry(linear)
    return polygon


def test_dissolve_is_the_union_of_the_matched_tiles(tmp_path):
    # 96 px tiles at a 48 px stride (overlapping), on a rotated grid of 0.5 m pixels: every outline must
    # be exactly the union of its tiles' ground quads, and the polygons must not share any area or edge.
    rotated = (0.5 * math.cos(0.3), -0.5 * math.sin(0.3), 500000.0, -0.5 * math.sin(0.3), -0.5 * math.cos(0.3),
               4100000.0)
    places = {1: _entry(1, "EPSG:32633", rotated), 2: _entry(2, "EPSG:32633", (0.5, 0, 501000.0, 0, -0.5, 4100000.0))}
    windows = np.array([(c, r, 96, 96) for r in range(0, 929, 48) for c in range(0, 929, 48)] * 2, np.int64)
    rasters = np.repeat([1, 2], len(windows) // 2)
    scores = np.random.default_rng(4).random(len(windows)).astype(np.float32)
    tile_scores = TileScores(scores, rasters, windows, places, "probability", "labels.gpkg", "idx", "m")
    result = dissolve(tile_scores, 0.85)
    matched = scores >= 0.85
    assert result.tiles == matched.sum() and result.tiles_scored == len(scores)
    assert [p.map_id for p in result.polygons] == list(range(1, len(result.polygons) + 1))
    assert len(result.polygons) > 10  # a random field: many separate patches
    for raster_id in (1, 2):
        a, b, c, d, e, f = places[raster_id].transform
        tiles = ogr.Geometry(ogr.wkbMultiPolygon)
        for col, row, w, h in windows[matched & (rasters == raster_id)]:
            corners = [(col, row), (col + w, row), (col + w, row + h), (col, row + h)]
            tiles.AddGeometry(_ogr([[(a * x + b * y + c, d * x + e * y + f) for x, y in corners]]))
        union = tiles.UnionCascaded()
        mine = [p for p in result.polygons if p.raster == places[raster_id].path]
        together = ogr.Geometry(ogr.wkbMultiPolygon)
        for polygon in mine:
            together.AddGeometry(_ogr(polygon.rings))
            assert polygon.area_m2 == pytest.approx(_ogr(polygon.rings).GetArea(), rel=1e-9)
        assert together.SymDifference(union).GetArea() < 1e-6 * union.GetArea()
        assert sum(p.area_m2 for p in mine) == pytest.approx(union.GetArea(), rel=1e-9)
        for i, one in enumerate(mine):  # apart, or touching at corners only
            for other in mine[i + 1:]:
                shared = _ogr(one.rings).Intersection(_ogr(other.rings))
                assert shared.GetArea() == 0 and shared.Length() == 0
    assert summarise(tile_scores, 0.85) == MapSummary(len(result.polygons), result.tiles, pytest.approx(result.area_m2))


def test_means_maxima_and_holes_of_a_ring_of_tiles():
    places = {1: _entry(1, "EPSG:32633", (0.5, 0, 500000.0, 0, -0.5, 4100000.0))}
    windows = np.array([(c * 100, r * 100, 100, 100) for r in range(5) for c in range(5)], np.int64)
    scores = np.zeros(25, np.float32)
    ring = [r * 5 + c for r in range(1, 4) for c in range(1, 4) if (r, c) != (2, 2)]
    scores[ring] = np.linspace(0.6, 0.95, 8)
    scores[24] = 0.8  # touches the ring at a corner only: a polygon of its own
    result = dissolve(TileScores(scores, np.ones(25, np.int64), windows, places, "probability", "", "", ""), 0.5)
    first, second = result.polygons
    assert (first.tiles, len(first.rings), second.tiles, len(second.rings)) == (8, 2, 1, 1)
    assert first.score_mean == pytest.approx(np.mean(scores[ring])) and first.score_max == pytest.approx(0.95)
    assert first.area_m2 == pytest.approx(150 * 150 - 50 * 50) and second.area_m2 == pytest.approx(2500)
    assert [len(r) for r in first.rings] == [4, 4]  # corners only, no points along the edges


def test_area_of_a_raster_in_degrees():
    places = {1: _entry(1, "EPSG:4326", (0.0001, 0, 10.0, 0, -0.0001, 60.0))}
    result = dissolve(TileScores(np.ones(1, np.float32), np.ones(1, np.int64), np.array([(0, 0, 100, 100)]),
                                 places, "probability", "", "", ""), 0.5)
    side = 6_378_137 * math.pi / 180 * 0.01  # metres in 0.01 degree of latitude
    assert result.area_m2 == pytest.approx(side * side * math.cos(math.radians(59.995)), rel=1e-6)


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_model):
    from tests.conftest import indexed_town_crop

    return indexed_town_crop(tmp_path_factory.mktemp("map"), tiny_model)


def _feedback(index) -> Feedback:
    """Two positive and two negative tiles from a box search: the classifier's case."""
    from tests.core.test_feedback import first_hits, hit_box

    hits = first_hits(*index, k=12)
    return Feedback((hit_box(hits[0]), hit_box(hits[1]), hit_box(hits[-1], False), hit_box(hits[-2], False)))


def test_every_tile_is_scored_as_the_feedback_search_reports_it(index, tmp_path):
    index_dir, _ = index
    feedback = _feedback(index)
    reported = search_feedback(index_dir, feedback, SearchParams(k=200, exclude_query_overlap=False, nms_iou=1.0))
    assert reported.scoring == "probability"
    calls = []
    scores = score_tiles(index_dir, feedback, MapParams(batch=7), "labels.gpkg",
                         progress=lambda percent, message: calls.append(percent))
    assert len(scores.scores) == len(scores.windows) == 49  # 7 x 7 tiles of 96 px at a 48 px stride
    by_window = {tuple(w): s for w, s in zip(scores.windows.tolist(), scores.scores.tolist())}
    for hit in reported.hits:  # the same probability for every tile the search ranks
        assert by_window[tuple(hit.window)] == pytest.approx(hit.score, abs=1e-5)
    assert calls[-1] == 100.0 and len(calls) == math.ceil(len(scores.scores) / 7)
    with pytest.raises(SearchCancelled):
        score_tiles(index_dir, feedback, MapParams(), is_cancelled=lambda: True)

    labels = write_labels(feedback, tmp_path / "labels.geojson")
    threshold = float(np.median(scores.scores))
    made = map_matches(index_dir, labels, MapParams(threshold=threshold))
    assert made.tiles == scores.count_at(threshold) and made.scoring == "probability"
    assert made.labels == str(labels.resolve()) and "resnet18-untrained-test" in made.model
    back = read_map(write_map(made, tmp_path / "map.gpkg", index_dir))
    assert (back.threshold, back.tiles, len(back.polygons)) == (threshold, made.tiles, len(made.polygons))
    assert back.area_m2 == pytest.approx(made.area_m2, rel=1e-6)


def test_rsir_map_end_to_end(index, tmp_path):
    from tests.core.test_cli import one_error_line, rsir

    index_dir, _ = index
    feedback = _feedback(index)
    labels = write_labels(feedback, tmp_path / "labels.gpkg")
    expected = score_tiles(index_dir, feedback, MapParams()).count_at(0.5)
    done = rsir("map", index_dir, "--labels", labels, "--threshold", "0.5", "--out", tmp_path / "map.geojson")
    made = read_map(tmp_path / "map.geojson")
    assert (made.threshold, made.tiles, made.tiles_scored, made.scoring) == (0.5, expected, 49, "probability")
    assert done.stdout.startswith(f"{len(made.polygons)} polygon(s) of {expected} matched tile(s) (of 49 scored")
    assert done.stdout.strip().endswith(f"written to {tmp_path / 'map.geojson'}")
    line = one_error_line(rsir("map", index_dir, "--labels", labels, "--threshold", "0.5", "--out",
                               tmp_path / "map.shp", check=False))
    assert "map.shp: unsupported map format '.shp'" in line
    assert rsir("map", index_dir, "--labels", labels, "--threshold", "2", "--out", tmp_path / "m.gpkg",
                check=False).returncode == 2
