"""Rasters with bad georeferencing never stop a build (issue 19, items 1 and 2).

A local (engineering) CRS has no way to longitude/latitude: such a raster is indexed without lon/lat
and compared only with itself, as a raster without a CRS is. A projection PROJ cannot compute, or a
geotransform that is not finite or has a zero pixel size, is refused by name while the rest are indexed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from rsir_qgis_plugin.core.store import IndexReader
from tests.conftest import town_pixels, write_raster

from .conftest import one_line_error, run_cli

LOCAL_CS = ('LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["metre",1],AXIS["Easting",EAST],'
            'AXIS["Northing",NORTH]]')
# Transverse Mercator with scale factor 0: every point is outside the projection's domain (PROJ err 4098).
TM_SCALE_0 = ('PROJCS["bad tm",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
              'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
              'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",121],'
              'PARAMETER["scale_factor",0],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],'
              'UNIT["metre",1]]')
TILE = ("--tile-size", 96, "--stride", 96)  # 16 tiles per 384 px crop


def crop(path: Path, crs, transform=None) -> Path:
    """A 384x384 crop of the real sample raster, written as a GeoTIFF with the CRS and transform given."""
    pixels, profile = town_pixels()
    rows, cols = slice(256, 640), slice(512, 896)
    window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    transform = transform or window_transform(window, profile["transform"])
    return write_raster(path, pixels[:, rows, cols].copy(), crs=crs, transform=transform)


def with_local_crs(path: Path) -> Path:
    """The same crop without a CRS in the file, given LOCAL_CS["site grid"] by its .aux.xml (as GIS do)."""
    crop(path, None)
    Path(f"{path}.aux.xml").write_text(f"<PAMDataset><SRS>{escape(LOCAL_CS)}</SRS></PAMDataset>")
    return path


def indexed(index: Path) -> dict[str, list]:
    """raster file name -> its tiles in the index."""
    with IndexReader(index) as reader:
        by_name: dict[str, list] = {}
        for tile in reader.tiles(list(range(reader.size))):
            by_name.setdefault(Path(tile.raster.path).name, []).append(tile)
        return by_name


def test_a_broken_projection_is_refused_by_name_and_the_rest_indexed(tmp_path, tiny_model):
    good = crop(tmp_path / "good.tif", "EPSG:3395")
    broken = crop(tmp_path / "tm0.tif", CRS.from_wkt(TM_SCALE_0))
    done = run_cli("index", "build", tmp_path / "idx", good, broken, "--model", tiny_model, *TILE)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 3, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if "tm0.tif" in line)
    assert "bad tm" in line and "cannot be transformed to longitude/latitude" in line, line
    assert set(indexed(tmp_path / "idx")) == {"good.tif"}
    # Searching on it says the same in one line instead of a traceback.
    one_line_error(run_cli("search", tmp_path / "idx", "--raster", broken, "--bbox", 0, 0, 1, 1,
                           "--model", tiny_model), "tm0.tif", "cannot be transformed to longitude/latitude")


def test_a_local_crs_raster_is_indexed_without_lonlat_and_searched_on_its_own_grid(tmp_path, tiny_model):
    good = crop(tmp_path / "good.tif", "EPSG:3395")
    local = with_local_crs(tmp_path / "site.tif")
    index = tmp_path / "idx"
    done = run_cli("index", "build", index, good, local, "--model", tiny_model, *TILE)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    tiles = indexed(index)
    assert len(tiles["site.tif"]) == 16 and len(tiles["good.tif"]) == 16
    assert "site grid" in tiles["site.tif"][0].raster.crs_wkt  # the CRS is kept for display and output
    assert all(v is None for t in tiles["site.tif"] for v in t.bounds_4326)  # NaN is stored as NULL
    assert np.isfinite([t.bounds_4326 for t in tiles["good.tif"]]).all()

    # A box in the local raster's own coordinates finds tiles, its own ones included, and the hits of both
    # rasters are written out (the local ones left in their coordinates, as rasters without a CRS are).
    (a, _, c, _, e, f), width = tiles["site.tif"][0].raster.transform, 96
    box = (c, f + e * width, c + a * width, f)
    done = run_cli("search", index, "--raster", local, "--bbox", *box, "--model", tiny_model, "-k", 40,
                   "--keep-overlap", "--out", tmp_path / "hits.gpkg")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    done = run_cli("search", index, "--raster", local, "--bbox", *box, "--model", tiny_model, "-k", 40)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)["features"]
    assert {Path(h["properties"]["raster"]).name for h in hits} == {"site.tif", "good.tif"}
    # A query on the georeferenced raster ranks the local raster's tiles too and writes them.
    ga, _, gc, _, ge, gf = tiles["good.tif"][0].raster.transform
    done = run_cli("search", index, "--raster", good, "--bbox", gc, gf + ge * width, gc + ga * width, gf,
                   "--model", tiny_model, "-k", 40, "--out", tmp_path / "hits_good.gpkg")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    # Exported with a null geometry for its tiles, as a raster without a CRS.
    done = run_cli("index", "export", index, "--geoparquet", tmp_path / "tiles.parquet")
    assert done.returncode == 0, done.stderr
    assert "16 tile(s) have corners that do not reproject" in done.stderr, done.stderr
    # A box in another CRS cannot be placed on a local grid: one line, no traceback.
    one_line_error(run_cli("search", index, "--raster", local, "--bbox", 121.0, 14.0, 121.001, 14.001,
                           "--crs", "EPSG:4326", "--model", tiny_model),
                   "site.tif", "local CRS ('site grid')")


def nan_origin(path: Path) -> Path:
    return crop(path, "EPSG:3395", Affine(0.1, 0.0, math.nan, 0.0, -0.1, math.nan))


def zero_pixel_size(path: Path) -> Path:
    return crop(path, "EPSG:3395", Affine(0.0, 0.0, 13467685.75, 0.0, 0.0, 1631994.28))


def test_a_non_finite_or_degenerate_geotransform_is_refused_by_name(tmp_path, tiny_model):
    good = crop(tmp_path / "good.tif", "EPSG:3395")
    nan_raster = nan_origin(tmp_path / "nan_origin.tif")
    zero_raster = zero_pixel_size(tmp_path / "zero_px.tif")
    index = tmp_path / "idx"
    done = run_cli("index", "build", index, good, nan_raster, zero_raster, "--model", tiny_model, *TILE)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stdout + done.stderr
    nan_line = next(line for line in done.stdout.splitlines() if "nan_origin.tif" in line)
    assert "geotransform" in nan_line and "not a finite number" in nan_line, nan_line
    zero_line = next(line for line in done.stdout.splitlines() if "zero_px.tif" in line)
    assert "geotransform" in zero_line and "zero pixel size" in zero_line, zero_line
    tiles = indexed(index)
    assert set(tiles) == {"good.tif"}
    assert np.isfinite([t.bounds for t in tiles["good.tif"]]).all()


def test_tiles_with_corners_off_the_projection_are_indexed_without_lonlat(tmp_path, tiny_model):
    # An orthographic view of the Earth 15,360 km wide: its outer corners lie off the globe, where PROJ
    # gives no position; rasterio fails a whole call for one such point.
    ortho = crop(tmp_path / "disk.tif", CRS.from_string("+proj=ortho +lat_0=0 +lon_0=0 +datum=WGS84"),
                 Affine(40_000.0, 0.0, -7_680_000.0, 0.0, -40_000.0, 7_680_000.0))
    index = tmp_path / "idx"
    done = run_cli("index", "build", index, ortho, "--model", tiny_model, *TILE)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    tiles = indexed(index)["disk.tif"]
    placed = [t for t in tiles if None not in t.bounds_4326]
    assert len(tiles) == 16 and 0 < len(placed) < 16
    assert np.isfinite([t.bounds_4326 for t in placed]).all()
    done = run_cli("search", index, "--raster", ortho, "--bbox", -7_680_000, 3_840_000, -3_840_000, 7_680_000,
                   "--model", tiny_model, "-k", 5)
    assert done.returncode == 0 and len(json.loads(done.stdout)["features"]) == 5, done.stderr
