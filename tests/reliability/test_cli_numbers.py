"""Non-finite, huge and negative numbers on the command line (issue 20, item 14): every number is checked
where argparse reads it, with one error line that quotes it short (1e+300, not 301 digits); negative
numbers in any float notation are values, not options (`--bbox -1.5e1 ...`).
"""
from __future__ import annotations

import json

import pytest
import rasterio

from .conftest import one_line_error, run_cli

LONGEST_LINE = 200  # characters of the error line: the trial saw one of 1,449

BUILD_CASES = [
    ("--tile-metres", "inf", "finite number"),
    ("--tile-metres", "nan", "finite number"),
    ("--tile-metres", "1e300", "got 1e+300"),
    ("--tile-metres", "-5", "above 0"),
    ("--stride-metres", "nan", "finite number"),
    ("--stride", "0", "at least 1"),
    ("--stride", "1" + "0" * 400, "over 1e+308"),
    ("--tile-size", "1" + "0" * 30, "at most 1,000,000 px"),
    ("--batch-size", "-1", "at least 1"),
    ("--bands", "1,2,0", "from 1 to 65535"),
]


def usage_error(done, *expected: str) -> str:
    """argparse's refusal: exit status 2, its usage, then one error line holding each expected text."""
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and len(errors[0]) <= LONGEST_LINE, done.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("option, value, expected", BUILD_CASES)
def test_build_numbers_are_checked_in_one_line(tmp_path, tiny_model, town_crop, option, value, expected):
    index = tmp_path / "idx"
    done = run_cli("index", "build", index, town_crop, "--model", tiny_model, option, value)
    usage_error(done, f"argument {option}", expected)
    assert not index.exists()  # refused before anything was made


def search_args(built, raster, *more) -> tuple:
    return ("search", built, "--raster", raster, "--model", "unused.onnx", *more)


@pytest.mark.parametrize("more, expected", [
    (("--bbox", "1e308", "1", "2", "3"), "got 1e+308"),
    (("--bbox", "-1e300", "-1e300", "1e300", "1e300", "--crs", "EPSG:4326"), "got -1e+300"),
    (("--bbox", "nan", "0", "1", "2"), "finite number"),
    (("--bbox", "-inf", "0", "1", "2"), "finite number"),
    (("--bbox", "0", "0", "1", "2", "-k", "0"), "argument -k"),
    (("--bbox", "0", "0", "1", "2", "--min-score", "nan"), "finite number"),
    (("--bbox", "0", "0", "1", "2", "--min-score", "2"), "at most 1"),
    (("--image-gsd", "0"), "above 0"),
])
def test_search_numbers_are_checked_in_one_line(built, two_rasters, more, expected):
    usage_error(run_cli(*search_args(built, two_rasters[0], *more)), expected)


def test_huge_numbers_in_a_feedback_box_are_one_short_line(built, two_rasters, tiny_model):
    for box in ("1e308,0,1,2", "0,0,1e300,1e300"):
        line = one_line_error(run_cli("search", built, "--positive", f"{two_rasters[0]}:{box}", "--model",
                                      tiny_model), "--positive", "beyond")
        assert len(line) <= LONGEST_LINE + len(str(two_rasters[0])) and "000000" not in line, line


def test_negative_numbers_in_any_notation_are_bbox_values(tmp_path, built, tiny_model, two_rasters):
    """A box of negative numbers in exponent notation is read as a box (before: 'expected 4 arguments'):
    the query raster is a copy of an indexed one placed in the western and southern hemispheres."""
    from rasterio.transform import from_origin

    with rasterio.open(two_rasters[0]) as dataset:
        pixels, profile, (_, bottom, right, top) = dataset.read(), dataset.profile, dataset.bounds
        size = dataset.transform.a
    west = tmp_path / "west.tif"
    profile.update(transform=from_origin(-right, -bottom + (top - bottom), size, size))
    with rasterio.open(west, "w", **profile) as copy:
        copy.write(pixels)
        xmin, ymin, xmax, ymax = copy.bounds
    quarter = (xmin, ymax - (ymax - ymin) / 4, xmin + (xmax - xmin) / 4, ymax)
    numbers = [f"{v:.10e}" for v in quarter]
    assert all(n.startswith("-") and "e+" in n for n in numbers), numbers
    done = run_cli("search", built, "--raster", west, "--bbox", *numbers, "--model", tiny_model, "-k", 3)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["features"]) == 3
