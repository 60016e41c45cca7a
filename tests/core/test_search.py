"""Box and image queries against a real index: exclusion, NMS, thresholds, CRS handling, outputs."""
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import IndexStoreError, ModelMismatchError, RasterError, RsirError
from rsir_qgis_plugin.core.geometry import boxes_intersect, window_iou
from rsir_qgis_plugin.core.hits_io import hits_to_geojson, write_hits
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.search import search_box, search_image


@pytest.fixture
def index(tmp_path, tiny_model, town_crop):
    index_dir = tmp_path / "idx"
    build_index(BuildParams(index_dir=index_dir, rasters=(town_crop,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=96, stride_px=48)))
    return index_dir


def query_box(raster, col, row, size):
    with rasterio.open(raster) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + size, row + size)
    return left, bottom, right, top


def test_hits_are_ranked_thinned_and_exclude_the_query(index, town_crop):
    box = query_box(town_crop, 96, 96, 96)
    result = search_box(index, town_crop, box, None, SearchParams(k=8, nms_iou=0.3))
    assert [h.rank for h in result.hits] == list(range(1, 9))
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0001 for s in scores)
    for hit in result.hits:
        xs, ys = zip(*hit.polygon)
        assert not boxes_intersect((min(xs), min(ys), max(xs), max(ys)), box)
    for i, a in enumerate(result.hits):
        for b in result.hits[i + 1:]:
            assert window_iou(a.window, b.window) <= 0.3


def test_keeping_overlap_finds_the_query_tile_itself_first(index, town_crop):
    result = search_box(index, town_crop, query_box(town_crop, 96, 96, 96), None,
                        SearchParams(k=3, exclude_query_overlap=False, rerank=False))
    assert result.hits[0].window == (96, 96, 96, 96) and result.hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_min_score_threshold(index, town_crop):
    box = query_box(town_crop, 96, 96, 96)
    everything = search_box(index, town_crop, box, None, SearchParams(k=50, nms_iou=1.0))
    cut = sorted(h.score for h in everything.hits)[len(everything.hits) // 2]
    thresholded = search_box(index, town_crop, box, None, SearchParams(k=50, nms_iou=1.0, min_score=cut))
    assert thresholded.hits and all(h.score >= cut for h in thresholded.hits)
    assert len(thresholded.hits) < len(everything.hits)


def test_query_box_in_another_crs_gives_the_same_answer(index, town_crop):
    box = query_box(town_crop, 96, 96, 96)
    with rasterio.open(town_crop) as src:
        box_4326 = transform_bounds(src.crs, "EPSG:4326", *box)
    native = search_box(index, town_crop, box, None, SearchParams(k=5))
    from_wgs84 = search_box(index, town_crop, box_4326, "EPSG:4326", SearchParams(k=5))
    assert [h.window for h in native.hits] == [h.window for h in from_wgs84.hits]


def test_box_outside_the_raster_is_a_clear_error(index, town_crop):
    with pytest.raises(RasterError, match="does not overlap the raster"):
        search_box(index, town_crop, (0, 0, 10, 10), None, SearchParams())


@pytest.mark.parametrize("box, message", [
    ((13467650.0, 1631930.0, 13467650.0, 1631940.0), r"has zero area \(XMIN equals XMAX\)"),
    ((13467650.0, 1631940.0, 13467660.0, 1631940.0), r"has zero area \(YMIN equals YMAX\)"),
    ((13467660.0, 1631930.0, 13467650.0, 1631940.0), "is inverted"),
    ((float("nan"), 1631930.0, 13467660.0, 1631940.0), "not a finite number"),
    ((13467650.0, 1631930.0, float("inf"), 1631940.0), "not a finite number"),
])
def test_a_box_with_no_area_or_no_numbers_is_refused(index, town_crop, box, message):
    with pytest.raises(RsirError, match=message):
        search_box(index, town_crop, box, None, SearchParams())


def test_a_box_in_the_wrong_crs_names_the_raster_the_box_and_its_crs(index, town_crop):
    box = query_box(town_crop, 96, 96, 96)  # metres, said to be degrees: latitude 1.6 million
    with pytest.raises(RasterError) as caught:
        search_box(index, town_crop, box, "EPSG:4326", SearchParams())
    assert caught.value.path == str(town_crop.resolve())
    assert "in EPSG:4326 has no position in the raster's CRS (EPSG:3395)" in caught.value.problem
    assert f"{box[0]:.1f}" in caught.value.problem


def test_a_box_in_degrees_without_its_crs_suggests_it(index, town_crop):
    box = query_box(town_crop, 96, 96, 96)
    with rasterio.open(town_crop) as src:
        box_4326 = transform_bounds(src.crs, "EPSG:4326", *box)
    hint = r"in EPSG:3395; the box looks like longitude/latitude: give its CRS, --crs EPSG:4326"
    with pytest.raises(RasterError, match=r"does not overlap the raster, which covers .* " + hint):
        search_box(index, town_crop, box_4326, None, SearchParams())


def test_missing_index_a_file_for_an_index_and_a_missing_raster(index, town_crop, tmp_path):
    box = query_box(town_crop, 96, 96, 96)
    with pytest.raises(IndexStoreError, match="nowhere: no such index directory"):
        search_box(tmp_path / "nowhere", town_crop, box, None, SearchParams())
    (tmp_path / "a_file").write_text("not an index")
    with pytest.raises(IndexStoreError, match="a_file: is a file, not an rsir index directory"):
        search_box(tmp_path / "a_file", town_crop, box, None, SearchParams())
    with pytest.raises(RasterError, match=r"gone\.tif: not found \(no such file\)"):
        search_box(index, tmp_path / "gone.tif", box, None, SearchParams())


def test_every_tile_overlapping_the_query_is_reported(index, town_crop):
    whole = query_box(town_crop, 0, 0, 384)
    excluded = search_box(index, town_crop, whole, None, SearchParams(k=5))
    assert excluded.hits == [] and excluded.all_excluded
    kept = search_box(index, town_crop, whole, None, SearchParams(k=5, exclude_query_overlap=False))
    assert len(kept.hits) == 5 and not kept.all_excluded
    part = search_box(index, town_crop, query_box(town_crop, 96, 96, 96), None, SearchParams(k=5))
    assert part.hits and not part.all_excluded


def test_search_with_another_model_is_refused(index, town_crop, other_model):
    with pytest.raises(ModelMismatchError):
        search_box(index, town_crop, query_box(town_crop, 0, 0, 96), None, SearchParams(model_path=other_model))


def test_image_query_and_tta(index, town_crop, tmp_path):
    with rasterio.open(town_crop) as src:
        pixels = src.read(window=rasterio.windows.Window(192, 192, 96, 96))
    image = tmp_path / "query.png"
    with rasterio.open(image, "w", driver="PNG", width=96, height=96, count=3, dtype="uint8") as dst:
        dst.write(pixels)
    # The model's own ranking (no αQE, which moves the query towards its neighbours): the tile is the image.
    result = search_image(index, image, SearchParams(k=3, rerank=False))
    assert result.hits[0].window == (192, 192, 96, 96) and result.hits[0].score > 0.999
    rotated = tmp_path / "rotated.png"
    with rasterio.open(rotated, "w", driver="PNG", width=96, height=96, count=3, dtype="uint8") as dst:
        dst.write(np.ascontiguousarray(np.rot90(pixels, 1, axes=(1, 2))))
    plain = search_image(index, rotated, SearchParams(k=1, tta=False))
    tta_original = search_image(index, image, SearchParams(k=1, tta=True))
    tta_rotated = search_image(index, rotated, SearchParams(k=1, tta=True))
    # The mean of the four rotations is the same for an image and its rotation.
    assert tta_rotated.hits[0].score == pytest.approx(tta_original.hits[0].score, abs=1e-4)
    assert plain.hits[0].score <= tta_rotated.hits[0].score + 1e-4


def test_geojson_and_geopackage_outputs(index, town_crop, tmp_path):
    result = search_box(index, town_crop, query_box(town_crop, 96, 96, 96), None, SearchParams(k=4))
    collection = hits_to_geojson(result)
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::3395"
    assert [f["properties"]["rank"] for f in collection["features"]] == [1, 2, 3, 4]
    ring = collection["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    in_wgs84 = hits_to_geojson(result, "EPSG:4326")
    lon, lat = in_wgs84["features"][0]["geometry"]["coordinates"][0][0]
    assert 120 < lon < 122 and 14 < lat < 15 and "crs" not in in_wgs84

    from osgeo import ogr

    gpkg = write_hits(result, tmp_path / "hits.gpkg")
    source = ogr.Open(str(gpkg))
    hits = source.GetLayerByName("rsir_hits")
    assert hits.GetFeatureCount() == 4 and hits.GetSpatialRef().GetAuthorityCode(None) == "3395"
    first = hits.GetNextFeature()
    assert (first.GetField("rank"), first.GetField("raster")) == (1, str(town_crop.resolve()))
    assert source.GetLayerByName("rsir_query").GetFeatureCount() == 1
    geojson = write_hits(result, tmp_path / "hits.geojson", "EPSG:4326")
    assert len(json.loads(geojson.read_text())["features"]) == 4
    with pytest.raises(Exception, match="unsupported output format"):
        write_hits(result, tmp_path / "hits.shp")


def test_a_rebuilt_index_is_searched_afresh(index, town_crop, tiny_model, tmp_path):
    import shutil

    box = query_box(town_crop, 96, 96, 96)
    before = search_box(index, town_crop, box, None, SearchParams(k=50, nms_iou=1.0))
    assert {h.raster for h in before.hits} == {str(town_crop.resolve())}
    twin = Path(shutil.copy(town_crop, tmp_path / "twin.tif"))
    build_index(BuildParams(index_dir=index, rasters=(twin,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=96, stride_px=48)))
    after = search_box(index, town_crop, box, None,
                       SearchParams(k=2, nms_iou=1.0, exclude_query_overlap=False))
    # The rebuilt index holds the twin: its copy of the query tile ties with the original for first place.
    assert {(h.raster, h.window) for h in after.hits} == {(str(twin.resolve()), (96, 96, 96, 96)),
                                                          (str(town_crop.resolve()), (96, 96, 96, 96))}
