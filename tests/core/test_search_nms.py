"""Non-maximum suppression on real tiles of a half-tile-stride grid: diagonal neighbours (a quarter of each
tile shared, IoU 1/7) must not both be hits, on one raster or across rasters of the same ground (issue
19, item 16: one dam was hit #1 and #3)."""
from pathlib import Path

import pytest
import rasterio

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.ranking import NMS_SHARED
from rsir_qgis_plugin.core.search import search_box
from tests.conftest import TOWN_RASTER
from tests.core.test_search_overlap import ogr_polygon, reprojected_copy

TILE, STRIDE = 96, 48  # half-tile stride: side neighbours share 1/2 of a tile (IoU 1/3), diagonal ones 1/4
NMS_IOU = 0.3


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_model):
    """The whole real town raster (1024 px, 441 tiles) and a copy warped to UTM 51N at 0.13 m, one index."""
    folder = tmp_path_factory.mktemp("nms")
    utm = reprojected_copy(TOWN_RASTER, folder / "utm.tif", "EPSG:32651", 0.13)
    build_index(BuildParams(index_dir=folder / "idx", rasters=(TOWN_RASTER, utm), model_path=tiny_model,
                            tiling=TilingParams(tile_px=TILE, stride_px=STRIDE)))
    return folder / "idx", utm


def shared_of_smaller(a, b) -> float:
    """Area two OGR polygons share, as a fraction of the smaller one."""
    return a.Intersection(b).GetArea() / min(a.GetArea(), b.GetArea())


def iou(a, b) -> float:
    inter = a.Intersection(b).GetArea()
    return inter / (a.GetArea() + b.GetArea() - inter)


def box_at(raster, col, row):
    with rasterio.open(raster) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + TILE, row + TILE)
    return left, bottom, right, top


def test_the_rule_suppresses_diagonal_neighbours_of_a_half_tile_grid_and_keeps_tiles_sharing_an_eighth():
    assert 1 / 8 < NMS_SHARED < 1 / 4  # diagonal neighbours share 1/4 of a tile; 7/8-stride neighbours 1/8


@pytest.mark.parametrize("query", [(480, 480), (96, 800), (704, 160)])
def test_no_two_hits_share_a_large_part_of_a_tile_on_one_raster(grid, query):
    index, _ = grid
    box = box_at(TOWN_RASTER, *query)
    result = search_box(index, TOWN_RASTER, box, None, SearchParams(k=25, nms_iou=NMS_IOU))
    assert len(result.hits) == 25
    mine = [h for h in result.hits if h.raster == str(TOWN_RASTER.resolve())]
    for i, a in enumerate(mine):
        for b in mine[i + 1:]:
            dc, dr = abs(a.window[0] - b.window[0]), abs(a.window[1] - b.window[1])
            shared = max(0, TILE - dc) * max(0, TILE - dr) / TILE ** 2
            assert shared <= NMS_SHARED, (
                f"hits #{a.rank} {a.window} and #{b.rank} {b.window} of {TOWN_RASTER.name} share "
                f"{shared:.0%} of a tile ({dc}, {dr} px apart): one place listed twice")


def test_hits_across_rasters_share_no_large_part_and_what_is_left_out_overlaps_a_better_hit(grid):
    """Judged with OGR polygons in the query raster's CRS, apart from rsir's own geometry."""
    index, utm = grid
    box = box_at(TOWN_RASTER, 480, 480)
    result = search_box(index, TOWN_RASTER, box, None, SearchParams(k=20, nms_iou=NMS_IOU))
    crs = result.query_crs_wkt
    polygons = {h.tile_id: ogr_polygon(h.polygon, h.crs_wkt, crs) for h in result.hits}
    for i, a in enumerate(result.hits):
        for b in result.hits[i + 1:]:
            shared = shared_of_smaller(polygons[a.tile_id], polygons[b.tile_id])
            assert shared <= NMS_SHARED + 0.01, (
                f"hits #{a.rank} ({Path(a.raster).name} {a.window}) and #{b.rank} ({Path(b.raster).name} "
                f"{b.window}) share {shared:.0%} of the smaller tile")
    # Every tile ranked above the last hit and left out overlaps a better hit: suppression went no further.
    every = search_box(index, TOWN_RASTER, box, None, SearchParams(k=400, nms_iou=1.0))
    kept = {h.tile_id for h in result.hits}
    last = result.hits[-1].score
    for candidate in every.hits:
        if candidate.score <= last or candidate.tile_id in kept:
            continue
        polygon = ogr_polygon(candidate.polygon, candidate.crs_wkt, crs)
        better = [polygons[h.tile_id] for h in result.hits if h.score >= candidate.score]
        assert any(shared_of_smaller(polygon, p) > NMS_SHARED - 0.01 or iou(polygon, p) > NMS_IOU - 0.01
                   for p in better), f"{Path(candidate.raster).name} {candidate.window} left out for nothing"
    assert {h.raster for h in result.hits} == {str(TOWN_RASTER.resolve()), str(utm.resolve())}
