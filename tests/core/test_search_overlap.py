"""Rasters of the same ground (a copy, a reprojected and resampled copy): the query area and places seen
twice are judged on the ground, across rasters, not per raster (issue 12, item 2)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.search import search_box
from tests.conftest import write_raster

TILING = TilingParams(tile_px=96, stride_px=48)
NMS_IOU = 0.3


def reprojected_copy(source: Path, path: Path, crs: str, resolution: float) -> Path:
    """The raster warped by GDAL to another CRS and pixel size (nodata 0 outside the source)."""
    with rasterio.open(source) as src:
        dst_transform, width, height = calculate_default_transform(src.crs, crs, src.width, src.height,
                                                                   *src.bounds, resolution=resolution)
        pixels = np.zeros((src.count, height, width), np.uint8)
        reproject(src.read(), pixels, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=dst_transform, dst_crs=crs, resampling=Resampling.bilinear,
                  src_nodata=None, dst_nodata=0)
    return write_raster(path, pixels, crs=crs, transform=dst_transform, nodata=0)


@pytest.fixture
def same_ground(tmp_path, tiny_model, town_crop):
    """One index of three rasters of the same ground: the crop (EPSG:3395, 0.1 m), a byte-for-byte copy,
    and a copy warped to UTM 51N at 0.13 m."""
    twin = Path(shutil.copy(town_crop, tmp_path / "twin.tif"))
    utm = reprojected_copy(town_crop, tmp_path / "utm.tif", "EPSG:32651", 0.13)
    index = tmp_path / "idx"
    build_index(BuildParams(index_dir=index, rasters=(town_crop, twin, utm), model_path=tiny_model,
                            tiling=TILING))
    return index, {"crop": town_crop, "twin": twin, "utm": utm}


def ogr_polygon(ring, src_crs, dst_crs):
    """A ring reprojected by rasterio (edges densified) as an OGR polygon: areas computed apart from rsir."""
    from osgeo import ogr

    steps = np.linspace(0, 1, 8, endpoint=False)
    dense = [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
             for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]) for t in steps]
    xs, ys = transform(src_crs, dst_crs, [p[0] for p in dense], [p[1] for p in dense])
    linear = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in list(zip(xs, ys)) + [(xs[0], ys[0])]:
        linear.AddPoint_2D(x, y)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(linear)
    return polygon


def centre_box(raster: Path, size_px: int) -> tuple[float, float, float, float]:
    with rasterio.open(raster) as src:
        col, row = (src.width - size_px) // 2, (src.height - size_px) // 2
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + size_px, row + size_px)
    return left, bottom, right, top


@pytest.mark.parametrize("query_raster", ["crop", "utm"])
def test_no_hit_is_the_query_area_or_a_place_already_listed_in_any_raster(same_ground, query_raster):
    index, rasters = same_ground
    raster = rasters[query_raster]
    box = centre_box(raster, 96)
    result = search_box(index, raster, box, None, SearchParams(k=8, nms_iou=NMS_IOU))
    assert len(result.hits) == 8
    crs = result.query_crs_wkt
    query = ogr_polygon([(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])], crs, crs)
    footprints = [ogr_polygon(hit.polygon, hit.crs_wkt, crs) for hit in result.hits]
    for hit, footprint in zip(result.hits, footprints):
        shared = footprint.Intersection(query).GetArea() / footprint.GetArea()
        assert shared < 1e-4, f"hit #{hit.rank} ({Path(hit.raster).name} {hit.window}) covers the query area"
    for i, a in enumerate(footprints):
        for j in range(i + 1, len(footprints)):
            b = footprints[j]
            iou = a.Intersection(b).GetArea() / a.Union(b).GetArea()
            assert iou <= NMS_IOU + 1e-3, f"hits #{i + 1} and #{j + 1} cover the same ground (IoU {iou:.2f})"


def test_keeping_the_overlap_lists_the_query_place_once(same_ground):
    index, rasters = same_ground
    box = centre_box(rasters["crop"], 96)
    result = search_box(index, rasters["crop"], box, None,
                        SearchParams(k=5, nms_iou=NMS_IOU, exclude_query_overlap=False, rerank=False))
    first = result.hits[0]
    assert first.score == pytest.approx(1.0, abs=1e-4)
    # The crop and its twin hold the same tile: one of them is the answer, the other is thinned away.
    copies = [h for h in result.hits
              if h.window == first.window and h.bounds_4326 == pytest.approx(first.bounds_4326)]
    assert len(copies) == 1


def test_rasters_without_a_crs_fall_back_to_pixel_windows_of_the_same_raster(tmp_path, tiny_model, town_crop):
    with rasterio.open(town_crop) as src:
        pixels = src.read()
    plain = write_raster(tmp_path / "plain.tif", pixels, crs=None)
    other = write_raster(tmp_path / "other.tif", pixels, crs=None)
    index = tmp_path / "idx"
    build_index(BuildParams(index_dir=index, rasters=(plain, other), model_path=tiny_model, tiling=TILING))
    with rasterio.open(plain) as src:
        left, top = src.transform * (96, 96)
        right, bottom = src.transform * (192, 192)
    result = search_box(index, plain, (left, bottom, right, top), None, SearchParams(k=6, nms_iou=NMS_IOU))
    mine = [h for h in result.hits if h.raster == str(plain.resolve())]
    assert all(h.window[0] + h.window[2] <= 96 or h.window[0] >= 192 or h.window[1] + h.window[3] <= 96
               or h.window[1] >= 192 for h in mine)
    # Without a CRS there is no common ground: the other raster's copy of the query tile is a fair hit.
    assert (str(other.resolve()), (96, 96, 96, 96)) == (result.hits[0].raster, result.hits[0].window)
