"""Ground footprints of tiles: lon/lat quads from a raster's CRS, and their overlap (the search's NMS)."""
import numpy as np
import pytest
from rasterio.warp import transform

from rsir_qgis_plugin.core.geometry import ground_iou, ground_overlaps, ground_quads

MERCATOR = (0.1, 0.0, 13467634.5, 0.0, -0.1, 1632019.875)  # the town raster's geotransform (EPSG:3395)


def test_quads_are_the_tile_corners_in_lon_lat():
    quads = ground_quads("EPSG:3395", MERCATOR, [(0, 0, 96, 96), (96, 0, 96, 96)])
    assert quads.shape == (2, 4, 2)
    lon, lat = transform("EPSG:3395", "EPSG:4326", [13467634.5, 13467644.1], [1632019.875, 1632010.275])
    assert quads[0, 0] == pytest.approx((lon[0], lat[0]), abs=1e-9)
    assert quads[0, 2] == pytest.approx((lon[1], lat[1]), abs=1e-9)
    assert ground_quads("", MERCATOR, [(0, 0, 96, 96)]) is None


def test_iou_on_the_ground():
    windows = [(0, 0, 96, 96), (48, 0, 96, 96), (96, 0, 96, 96), (48, 48, 96, 96)]
    quads = ground_quads("EPSG:3395", MERCATOR, windows)
    same, half, beside, diagonal = quads
    assert ground_iou(same, same) == pytest.approx(1.0)
    assert ground_iou(same, half) == pytest.approx(1 / 3, rel=1e-6)
    assert ground_iou(same, diagonal) == pytest.approx(1 / 7, rel=1e-6)
    assert ground_iou(same, beside) == pytest.approx(0.0, abs=1e-9)
    assert ground_overlaps(same, half) and not ground_overlaps(same, beside)


def test_the_same_tile_in_another_crs_and_resolution_is_the_same_place():
    mercator = ground_quads("EPSG:3395", MERCATOR, [(0, 0, 96, 96)])[0]
    # The same ground in UTM 51N, at 0.2 m: one 48-pixel tile.
    xs, ys = transform("EPSG:3395", "EPSG:32651", [13467634.5], [1632019.875])
    utm = ground_quads("EPSG:32651", (0.2, 0.0, xs[0], 0.0, -0.2, ys[0]), [(0, 0, 48, 48)])[0]
    # Not identical (UTM's grid is turned by the meridian convergence, and its scale differs), but close.
    assert 0.85 < ground_iou(mercator, utm) < 1.0


def test_tiles_across_the_antimeridian_overlap():
    # A geographic raster from 179.9 E, and one whose longitudes run on from -180 (the same ground).
    east = ground_quads("EPSG:4326", (0.001, 0.0, 179.95, 0.0, -0.001, 10.0), [(0, 0, 100, 100)])[0]
    west = ground_quads("EPSG:4326", (0.001, 0.0, -180.05, 0.0, -0.001, 10.0), [(0, 0, 100, 100)])[0]
    assert np.ptp(east[:, 0]) == pytest.approx(0.1)
    assert ground_iou(east, west) == pytest.approx(1.0)


def test_a_footprint_that_does_not_reproject_overlaps_nothing():
    broken = np.full((4, 2), np.nan)
    quad = ground_quads("EPSG:3395", MERCATOR, [(0, 0, 96, 96)])[0]
    assert ground_iou(broken, quad) == 0.0 and not ground_overlaps(quad, broken)
