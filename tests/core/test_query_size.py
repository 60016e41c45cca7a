"""Query boxes of a few pixels are refused with one line naming the raster, the box's size in pixels and
the minimum, for box queries, feedback boxes and image queries, in the core and the CLI (issue 19,
item 5: a 2x2-pixel box gave 20 hits at 0.957, a sub-pixel box hits at 0.956)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsir_qgis_plugin.core.errors import RasterError
from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox, search_feedback
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.query_box import MIN_QUERY_BOX_PX, box_big_enough
from rsir_qgis_plugin.core.search import search_box, search_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model):
    """A real 384x384 crop of the town raster (0.1 m pixels), indexed with 96 px tiles."""
    from tests.conftest import indexed_town_crop

    return indexed_town_crop(tmp_path_factory.mktemp("query_size"), tiny_model)


def pixel_box(raster, col, row, width, height=None):
    """A box in the raster's CRS covering (fractional) pixels col..col+width, row..row+height."""
    with rasterio.open(raster) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + width, row + (height or width))
    return left, bottom, right, top


def test_the_public_check_says_whether_a_box_is_big_enough():
    assert MIN_QUERY_BOX_PX == 8
    assert box_big_enough(8, 8) and box_big_enough(200, 8) and box_big_enough(7.995, 30)
    assert not box_big_enough(7.9, 100) and not box_big_enough(100, 2) and not box_big_enough(0.4, 0.4)


@pytest.mark.parametrize("size, shown", [(2, "2 x 2"), (0.4, "0.4 x 0.4"), (7, "7 x 7")])
def test_a_box_of_a_few_pixels_is_refused_naming_raster_size_and_minimum(indexed, size, shown):
    index, raster = indexed
    with pytest.raises(RasterError) as caught:
        search_box(index, raster, pixel_box(raster, 100.3, 100.3, size), None, SearchParams(k=20))
    assert caught.value.path == str(raster.resolve())
    assert f"covers {shown} pixels" in caught.value.problem
    assert f"at least {MIN_QUERY_BOX_PX} pixels on each side" in caught.value.problem


def test_a_thin_box_and_a_box_mostly_off_the_raster_are_refused_by_their_part_on_it(indexed):
    index, raster = indexed
    with pytest.raises(RasterError, match=r"covers 40 x 3 pixels"):
        search_box(index, raster, pixel_box(raster, 100, 100, 40, 3), None, SearchParams())
    with pytest.raises(RasterError, match=r"covers 5 x 40 pixels"):  # 45 px wide, 5 of them on the raster
        search_box(index, raster, pixel_box(raster, 379, 100, 45, 40), None, SearchParams())


def test_a_box_of_the_minimum_size_is_searched(indexed):
    index, raster = indexed
    result = search_box(index, raster, pixel_box(raster, 100, 100, MIN_QUERY_BOX_PX), None, SearchParams(k=3))
    assert len(result.hits) == 3


@pytest.mark.parametrize("positive", [True, False])
def test_a_tiny_feedback_box_is_refused_naming_the_example(indexed, positive):
    index, raster = indexed
    good = LabelledBox(raster=str(raster), bbox=pixel_box(raster, 0, 0, 96), crs=None, positive=True)
    tiny = LabelledBox(raster=str(raster), bbox=pixel_box(raster, 200, 200, 2), crs=None, positive=positive)
    with pytest.raises(RasterError) as caught:
        search_feedback(index, Feedback((good, tiny)), SearchParams())
    assert caught.value.path == str(raster.resolve())
    label = "positive example 2" if positive else "negative example 1"
    assert "covers 2 x 2 pixels" in caught.value.problem and caught.value.problem.endswith(f"({label})")


def test_an_image_of_a_few_pixels_is_refused(indexed, tmp_path):
    index, _ = indexed
    image = tmp_path / "speck.png"
    with rasterio.open(image, "w", driver="PNG", width=4, height=4, count=3, dtype="uint8") as dst:
        dst.write(np.full((3, 4, 4), 120, np.uint8))
    with pytest.raises(RasterError, match=r"speck\.png: the image is 4 x 4 pixels, too few"):
        search_image(index, image, SearchParams())


def rsir(*args):
    return subprocess.run([sys.executable, "-m", "rsir_qgis_plugin", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_cli_refuses_a_sub_pixel_box_and_a_tiny_negative_with_one_line(indexed):
    index, raster = indexed
    done = rsir("search", index, "--raster", raster, "--bbox", *pixel_box(raster, 50.2, 50.2, 0.5))
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rsir: error: {raster.resolve()}: the query box")
    assert "covers 0.5 x 0.5 pixels" in lines[0] and f"at least {MIN_QUERY_BOX_PX} pixels" in lines[0]

    negative = ",".join(str(v) for v in pixel_box(raster, 10, 10, 3))
    done = rsir("search", index, "--raster", raster, "--bbox", *pixel_box(raster, 0, 0, 96),
                "--negative", f"{raster}:{negative}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1
    assert "covers 3 x 3 pixels" in lines[0] and lines[0].endswith("(negative example 1)")
