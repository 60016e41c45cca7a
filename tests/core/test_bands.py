"""The one band-list parser (core.params.parse_bands) that the command line, the build dialog, the saved
settings and Processing share (issue 21, item 5): "4,3,2" and "4 3 2" mean the same everywhere."""
from __future__ import annotations

import argparse

import pytest

from rsir_qgis_plugin.cli import _bands, get_args_parser
from rsir_qgis_plugin.core.params import MAX_BAND, parse_bands


@pytest.mark.parametrize("text", ["4,3,2", "4 3 2", "4, 3, 2", " 4  3 2 ", "4;3;2", "4,,3 ,2"])
def test_commas_spaces_and_semicolons_give_the_same_bands(text):
    assert parse_bands(text) == (4, 3, 2)


@pytest.mark.parametrize("text", ["", "   ", ",", " , ; "])
def test_no_band_numbers_means_rgb(text):
    assert parse_bands(text) is None


@pytest.mark.parametrize("text", ["red", "4,3,x", "0,1,2", "-1 2 3", "1.5,2,3", f"1,2,{MAX_BAND + 1}"])
def test_bad_band_lists_are_one_line_errors(text):
    with pytest.raises(ValueError) as caught:
        parse_bands(text)
    message = str(caught.value)
    assert "band numbers" in message and f"from 1 to {MAX_BAND}" in message and "\n" not in message
    assert f"'{text}'" in message  # the user sees what was refused


def test_a_long_bad_list_is_quoted_short():
    assert len(str(pytest.raises(ValueError, parse_bands, "x" * 10_000).value)) < 200


@pytest.mark.parametrize("text", ["4,3,2", "4 3 2"])
def test_the_command_line_takes_both_forms(text):
    args = get_args_parser().parse_args(["index", "build", "idx", "a.tif", "--bands", text])
    assert args.bands == (4, 3, 2)


@pytest.mark.parametrize("text", ["", "1,2,0", "red"])
def test_the_command_line_refuses_what_the_parser_refuses_and_an_empty_list(text):
    with pytest.raises(argparse.ArgumentTypeError):
        _bands(text)
