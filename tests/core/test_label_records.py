"""The one reading of a labels layer (core.label_records.labelled_boxes) that the command line's OGR
reader and the plugin's QGIS reader both feed with records: every rule, in order, on plain records.

The readers used to disagree on a feature without a raster: the plugin gave it the raster under it,
the command line left it out. Now both follow the plugin's rule; the command line knows no rasters'
footprints (raster_under None), so there it is still left out, as its README says.
"""
from __future__ import annotations

import pytest

from rsir_qgis_plugin.core.label_records import NO_RASTER_UNDER, LabelRecord, labelled_boxes, parse_label

BOX = [(10.0, 20.0), (14.0, 20.0), (14.0, 16.0), (10.0, 16.0)]  # xmin 10, ymin 16, xmax 14, ymax 20


def read(records, layer_crs="EPSG:3857", raster_crs=lambda path: None, **kwargs):
    return labelled_boxes(records, layer_crs, raster_crs, **kwargs)


def test_a_feature_without_a_raster_takes_the_raster_under_it_where_the_reader_knows_one():
    records = [LabelRecord(1, "", "positive", BOX), LabelRecord(2, "  ", "negative", BOX)]
    # The command line: no footprints, so no raster under the box: left out.
    cli = read(records)
    assert cli.feedback.boxes == ()
    assert cli.skipped == ["feature 1: no raster given", "feature 2: no raster given"]
    # The plugin: the project's raster under the box (the rule of a drawn query box).
    asked = []

    def under(ring):
        asked.append(ring)
        return "/data/under.tif"

    plugin = read(records, raster_under=under)
    assert [(b.raster, b.positive, b.bbox, b.crs) for b in plugin.feedback.boxes] == [
        ("/data/under.tif", True, (10.0, 16.0, 14.0, 20.0), "EPSG:3857"),
        ("/data/under.tif", False, (10.0, 16.0, 14.0, 20.0), "EPSG:3857")]
    assert asked == [BOX, BOX] and plugin.skipped == []
    assert (plugin.positives, plugin.negatives) == (1, 1)
    nothing = read(records[:1], raster_under=lambda ring: None)
    assert nothing.skipped == [f"feature 1: {NO_RASTER_UNDER}"]


def test_each_rule_names_the_feature_in_record_order():
    records = [
        LabelRecord(7, "/data/a.tif", " Positive ", BOX),  # kept: label case and blanks ignored
        LabelRecord(3, "/data/a.tif", "maybe", BOX),
        LabelRecord(9, "/data/a.tif", "negative", None),
        LabelRecord(4, "/data/a.tif", "negative", [(float("nan"), 1.0), (2.0, 2.0), (3.0, 1.0)]),
        LabelRecord(5, "/data/a.tif", "negative", [(1.0, 1.0), (1.0, 5.0)]),  # a line: no area
        LabelRecord(-1, "/vsicurl/http://127.0.0.1:9/x.tif", "negative", BOX),  # new in an edit buffer
    ]
    got = read(records)
    assert [b.raster for b in got.feedback.boxes] == ["/data/a.tif"] and got.feedback.boxes[0].positive
    assert [line.split(":")[0] for line in got.skipped] == [
        "feature 3", "feature 9", "feature 4", "feature 5", "feature -1"]
    assert "label 'maybe' is neither 'positive' nor 'negative'" in got.skipped[0]
    assert "no polygon geometry" in got.skipped[1]
    assert "not a finite number" in got.skipped[2]
    assert "its box has no area" in got.skipped[3]
    assert "may name local raster files only" in got.skipped[4]


def test_relative_rasters_start_at_the_labels_folder(tmp_path):
    got = read([LabelRecord(1, "../rasters/a.tif", "positive", BOX)], base_dir=tmp_path / "labels")
    assert got.feedback.boxes[0].raster == str(tmp_path / "rasters" / "a.tif")
    assert read([LabelRecord(1, "a.tif", "positive", BOX)]).feedback.boxes[0].raster == "a.tif"


def test_boxes_are_placed_in_their_rasters_crs_or_left_out_when_proj_cannot():
    from rasterio.warp import transform_bounds

    utm = (500_010.0, 3_999_950.0, 500_042.0, 3_999_982.0)
    west, south, east, north = transform_bounds("EPSG:32633", "EPSG:4326", *utm)
    degrees = [(west, north), (east, north), (east, south), (west, south)]
    crs_of = {"/data/utm.tif": "EPSG:32633", "/data/plain.tif": ""}.get
    records = [LabelRecord(1, "/data/utm.tif", "positive", degrees),
               LabelRecord(2, "/data/plain.tif", "negative", degrees),  # a raster without a CRS
               LabelRecord(3, "/data/utm.tif", "negative", [(0.0, 89.0), (0.0, 1e7), (1.0, 1e7)])]
    got = read(records, layer_crs="EPSG:4326", raster_crs=crs_of)
    first, second = got.feedback.boxes
    assert first.crs == "EPSG:32633" and first.bbox[0] <= utm[0] + 1e-6 and first.bbox[2] >= utm[2] - 1e-6
    assert first.bbox[2] - first.bbox[0] < 1.05 * (utm[2] - utm[0])
    assert second.crs == "EPSG:4326" and second.bbox == pytest.approx((west, south, east, north))
    [skipped] = got.skipped  # latitude 1e7: a wrong layer CRS
    assert skipped.startswith("feature 3: its polygon does not reproject to its raster's CRS (EPSG:32633)")


def test_label_words():
    assert parse_label(" NEGATIVE ") is False and parse_label("positive") is True and parse_label("") is None
