"""Review files (core/review_io.py): a map's sample written and read back in both formats, holes and marks kept."""
from __future__ import annotations

import pytest

from rsir_qgis_plugin.core.geometry import crs_from
from rsir_qgis_plugin.core.match_map import MappedPolygon, MatchMap
from rsir_qgis_plugin.core.review import draw_sample
from rsir_qgis_plugin.core.review_io import read_review, sample_review, write_review

UTM = crs_from("EPSG:32633").to_wkt()
OUTER = [(500000.0, 4100300.0), (500300.0, 4100300.0), (500300.0, 4100000.0), (500000.0, 4100000.0)]
HOLE = [(500100.0, 4100200.0), (500200.0, 4100200.0), (500200.0, 4100100.0), (500100.0, 4100100.0)]


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_a_sample_round_trips_with_its_holes_strata_and_marks(tmp_path, suffix):
    square = [(500400.0, 4100100.0), (500500.0, 4100100.0), (500500.0, 4100000.0), (500400.0, 4100000.0)]
    match_map = MatchMap((MappedPolygon(7, "/data/a.tif", (OUTER, HOLE), UTM, 0.8, 0.97, 8, 80000.0),
                          MappedPolygon(9, "/data/b.tif", (square,), UTM, 0.61, 0.61, 1, 10000.0)),
                         threshold=0.6, labels="l.gpkg", index="idx", model="m")
    review = sample_review(match_map, draw_sample([0.97, 0.61], [7, 9], 2, strata=2, seed=0))
    first = review.items[0].map_id
    marked = review.with_mark(0, True)
    back = read_review(write_review(marked, tmp_path / f"review{suffix}"))
    assert crs_from(back.crs_wkt) == crs_from("EPSG:32633")
    assert back.strata == review.strata and [s.size for s in back.strata] == [2]  # 2 polygons: one stratum
    by_id = {item.map_id: item for item in back.items}
    assert [list(ring) for ring in by_id[7].rings] == [OUTER, HOLE]
    assert (by_id[7].score, by_id[7].raster, by_id[7].stratum) == (0.97, "/data/a.tif", 1)
    assert [item.relevant for item in back.items] == [True, None] and back.items[0].map_id == first
    assert back.marked == 1 and len(back.labels().boxes) == 1
