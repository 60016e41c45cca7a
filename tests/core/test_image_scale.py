"""An image query is seen at the indexed tiles' ground scale: its scale is read from its georeferencing
(metres, or degrees at its centre) or given (--image-gsd), a larger image is embedded by its centre at
one tile's ground size, and notes say when the scales are far apart or unknown (issue 19, item 18: a
0.3 m UC Merced JPEG was compared whole, whatever its ground scale, and found nothing alike)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import RsirError
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.query_image import image_gsd
from rsir_qgis_plugin.core.raster import describe
from rsir_qgis_plugin.core.search import search_image

ROOT = Path(__file__).resolve().parents[2]
PARKING = ROOT / "tests" / "data" / "scenes" / "Parking" / "parking_1.jpg"  # a real 150 px AID scene
TILE, STRIDE = 64, 32  # pixels of the 0.1 m town raster: tiles of 6.4 m
IMAGE_AT, IMAGE_PX = 32, 320  # the query: 32 m of the same ground, whose centre 6.4 m is the tile at 160


@pytest.fixture(scope="module")
def scaled(tmp_path_factory, tiny_model):
    """A real 384 px crop of the town raster (0.1 m) indexed in 64 px tiles, and images of 320 px of it:
    a GeoTIFF keeping its georeferencing, the same pixels as a plain PNG, and the GeoTIFF in degrees."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject
    from rasterio.windows import transform

    from tests.conftest import town_pixels, write_raster

    folder = tmp_path_factory.mktemp("image_scale")
    pixels, profile = town_pixels()
    crop_transform = transform(Window(512, 256, 384, 384), profile["transform"])
    raster = write_raster(folder / "town_crop.tif", pixels[:, 256:640, 512:896].copy(), crs=profile["crs"],
                          transform=crop_transform)
    build_index(BuildParams(index_dir=folder / "idx", rasters=(raster,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=TILE, stride_px=STRIDE)))
    window = Window(IMAGE_AT, IMAGE_AT, IMAGE_PX, IMAGE_PX)
    with rasterio.open(raster) as src:
        part, part_transform = src.read(window=window), src.window_transform(window)
    geotiff = write_raster(folder / "query.tif", part, crs=profile["crs"], transform=part_transform)
    png = folder / "query.png"
    with rasterio.open(png, "w", driver="PNG", width=IMAGE_PX, height=IMAGE_PX, count=3,
                       dtype="uint8") as dst:
        dst.write(part)
    bounds = rasterio.transform.array_bounds(IMAGE_PX, IMAGE_PX, part_transform)
    degrees_transform, width, height = calculate_default_transform(profile["crs"], "EPSG:4326", IMAGE_PX,
                                                                   IMAGE_PX, *bounds)
    degrees = np.zeros((3, height, width), np.uint8)
    reproject(part, degrees, src_transform=part_transform, src_crs=profile["crs"],
              dst_transform=degrees_transform, dst_crs="EPSG:4326", resampling=Resampling.bilinear)
    lonlat = write_raster(folder / "query_4326.tif", degrees, crs="EPSG:4326", transform=degrees_transform)
    return folder / "idx", raster, {"geotiff": geotiff, "png": png, "lonlat": lonlat}


def rsir(*args):
    return subprocess.run([sys.executable, "-m", "rsir_qgis_plugin", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_scale_is_read_from_georeferencing_in_metres_or_degrees(scaled):
    _, _, images = scaled
    assert image_gsd(describe(str(images["geotiff"]), None, 3)) == pytest.approx(0.1, rel=1e-3)
    # EPSG:3395 metres are Mercator metres: at latitude 14.6 a degree is 1.033 times their ground length
    assert image_gsd(describe(str(images["lonlat"]), None, 3)) == pytest.approx(0.1, rel=0.05)
    assert image_gsd(describe(str(images["png"]), None, 3)) is None
    assert image_gsd(describe(str(PARKING), None, 3)) is None


@pytest.mark.parametrize("image, gsd", [("geotiff", None), ("png", 0.1)])
def test_a_larger_image_of_known_scale_is_embedded_by_its_centre_at_a_tiles_ground_size(scaled, image, gsd):
    index, raster, images = scaled
    # The model's own ranking (αQE moves the query towards its neighbours): the same pixels are the first hit.
    result = search_image(index, images[image], SearchParams(k=3, rerank=False), image_gsd=gsd)
    centre = IMAGE_AT + (IMAGE_PX - TILE) // 2
    assert result.hits[0].window == (centre, centre, TILE, TILE), (
        f"{images[image].name}: the tile at its centre is not the first hit ({result.hits[0].window})")
    assert result.hits[0].score > 0.999  # the same pixels, read at the same scale as the tile
    assert len(result.notes) == 1 and "covers 32 x 32 m (0.1 m a pixel)" in result.notes[0]
    assert "indexed tiles 6.4 m: its centre 6.4 x 6.4 m (64 x 64 px) was embedded" in result.notes[0]


def test_an_image_of_unknown_scale_is_compared_whole_with_a_note(scaled):
    index, _, images = scaled
    result = search_image(index, images["png"], SearchParams(k=3))
    assert len(result.notes) == 1
    assert "query.png has no ground scale" in result.notes[0] and "tiles of 6.4 m" in result.notes[0]
    with pytest.raises(RsirError, match="must be a positive number of metres, got -1"):
        search_image(index, images["png"], SearchParams(k=3), image_gsd=-1.0)


def test_a_much_smaller_image_is_embedded_whole_with_a_note(scaled, tmp_path):
    index, raster, _ = scaled
    window = Window(100, 100, 16, 16)
    with rasterio.open(raster) as src:
        small = tmp_path / "small.tif"
        with rasterio.open(small, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint8",
                           crs=src.crs, transform=src.window_transform(window)) as dst:
            dst.write(src.read(window=window))
    result = search_image(index, small, SearchParams(k=3))
    assert len(result.notes) == 1 and "covers 1.6 x 1.6 m (0.1 m a pixel), much less than" in result.notes[0]
    assert "embedded whole, at 4x the tiles' ground scale" in result.notes[0]


def test_the_cli_takes_image_gsd_for_a_real_aid_jpeg_and_notes_the_scales(scaled):
    index, _, _ = scaled
    unknown = rsir("search", index, "--image", PARKING, "-k", "3")
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stderr.strip().splitlines() == [
        f"rsir: note: {PARKING} has no ground scale (no georeferencing in metres): it is compared whatever "
        "its scale with tiles of 6.4 m; give its metres a pixel (--image-gsd) or resample it so that it "
        "covers about 6.4 m"]
    given = rsir("search", index, "--image", PARKING, "--image-gsd", "0.5", "-k", "3")
    assert given.returncode == 0, given.stderr
    lines = given.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rsir: note: {PARKING} covers 75 x 75 m (0.5 m a pixel)")
    assert "its centre 6.5 x 6.5 m (13 x 13 px) was embedded" in lines[0]
    alone = rsir("search", index, "--raster", PARKING, "--bbox", 0, 0, 50, 50, "--image-gsd", "0.5")
    assert alone.returncode == 1
    assert alone.stderr.strip() == ("rsir: error: --image-gsd gives the ground scale of --image; "
                                    "give --image too")
