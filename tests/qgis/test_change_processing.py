"""rsir:change_hotspots and rsir:find_similar_change through processing.run (as the toolbox, the modeler and
qgis_process run them), on the pairs of dates of tests/core/change_data.py: real imagery with blocks of river
pasted over roofs, the bundled model, a real index."""
from __future__ import annotations

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)

from tests.core.change_data import AT_A, AT_B, TILE, window_box
from tests.qgis.change_dates import make_dates

pytestmark = pytest.mark.slow  # the bundled model embeds the before date and each after date once


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    """(index, before, after with blocks A and B pasted, after with block A only): files."""
    return make_dates(tmp_path_factory.mktemp("change_processing"))


def layer(project: QgsProject, path, name: str) -> QgsRasterLayer:
    raster = QgsRasterLayer(str(path), name, "gdal")
    assert raster.isValid()
    project.addMapLayer(raster)
    return raster


def rectangle(box) -> QgsRectangle:
    return QgsRectangle(*box)


def sorted_features(output):
    return sorted(output.getFeatures(), key=lambda f: f["rank"])


def test_change_hotspots_puts_the_pasted_block_first(provider, project, dates):
    import processing

    index, before, _, one = dates
    before_layer, after_layer = layer(project, before, "2019"), layer(project, one, "2024")
    feedback = QgsProcessingFeedback()
    out = processing.run("rsir:change_hotspots", {
        "INDEX": str(index), "BEFORE": [before_layer], "AFTER": [after_layer], "K": 5, "SCORE": 0,
        "OUTPUT": "TEMPORARY_OUTPUT"}, feedback=feedback)["OUTPUT"]
    assert [f.name() for f in out.fields()] == ["rank", "score", "before", "after"]
    assert out.crs() == before_layer.crs()
    features = sorted_features(out)
    assert [f["rank"] for f in features] == list(range(1, len(features) + 1)) and len(features) >= 2
    assert [f["score"] for f in features] == sorted((f["score"] for f in features), reverse=True)
    first = features[0]
    assert (first["before"], first["after"]) == (str(before), str(one))
    expected = rectangle(window_box(before, (*AT_A, TILE, TILE)))
    got = first.geometry().boundingBox()
    assert got.xMinimum() == pytest.approx(expected.xMinimum(), abs=1e-6)
    assert got.yMaximum() == pytest.approx(expected.yMaximum(), abs=1e-6)
    assert got.width() == pytest.approx(expected.width(), rel=1e-6)
    assert "49 of 49 places compared" in feedback.textLog()


def test_find_similar_change_finds_the_second_block_first(provider, project, dates):
    """The example is block A, given as an extent in Web Mercator (the rasters are World Mercator)."""
    import processing

    index, before, both, _ = dates
    before_layer, after_layer = layer(project, before, "2019"), layer(project, both, "2024")
    to_3857 = QgsCoordinateTransform(before_layer.crs(), QgsCoordinateReferenceSystem("EPSG:3857"), project)
    box = to_3857.transformBoundingBox(rectangle(window_box(before, (*AT_A, TILE, TILE))))
    box.grow(-0.01)  # inside the block: reprojected, its corners must not reach the next pixel
    extent = f"{box.xMinimum()},{box.xMaximum()},{box.yMinimum()},{box.yMaximum()} [EPSG:3857]"
    out = processing.run("rsir:find_similar_change", {
        "INDEX": str(index), "BEFORE": [before_layer], "AFTER": [after_layer], "RASTER": before_layer,
        "EXTENT": extent, "K": 5, "OTHER_PAIRS": False, "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    features = sorted_features(out)
    block_a, block_b = (rectangle(window_box(before, (*at, TILE, TILE))) for at in (AT_A, AT_B))
    overlap = features[0].geometry().boundingBox().intersect(block_b)
    assert overlap.area() > 0.25 * block_b.area()
    for feature in features:  # the example's place is left out
        assert feature.geometry().boundingBox().intersect(block_a).area() < 1e-9


def test_an_after_raster_elsewhere_is_one_line(provider, project, dates, town_half):
    """Rasters that do not overlap on the ground: the engine's one line, as a Processing error."""
    import processing

    index, before, _, _ = dates
    with pytest.raises(QgsProcessingException, match="overlap"):
        processing.run("rsir:change_hotspots", {
            "INDEX": str(index), "BEFORE": [layer(project, before, "2019")],
            "AFTER": [layer(project, town_half, "elsewhere")], "OUTPUT": "TEMPORARY_OUTPUT"})


def test_find_similar_change_takes_positives_and_negatives_from_a_labels_layer(provider, project, dates,
                                                                               tmp_path):
    """No extent: a labels layer (the `rsir labels` layout) with two boxes of the river change sought and two
    roof blocks pasted elsewhere as changes not sought: the logistic regression of relevance feedback ranks,
    and the second river block comes first. One negative has no raster: the raster under it is taken."""
    import processing
    from qgis.core import QgsFeature, QgsGeometry

    from rsir_qgis_plugin.labels.layer import label_fields, make_labels_layer
    from tests.core.change_data import RIVER_A, RIVER_B, crop_pixels, pasted, write_after

    index, before, _, _ = dates
    roofs, at_c, at_d = (100, 900), (288, 0), (288, 288)  # town blocks pasted over other town: not water
    after = write_after(tmp_path / "after_mixed.tif", pasted(crop_pixels()[0], (RIVER_A, AT_A), (RIVER_B, AT_B),
                                                             (roofs, at_c), (roofs, at_d)))
    before_layer, after_layer = layer(project, before, "2019"), layer(project, after, "2024")
    labels = make_labels_layer(before_layer.crs())
    boxes = [((*AT_A, TILE, TILE), str(before), "positive"),
             ((AT_A[0] + 16, AT_A[1] + 16, 64, 64), str(after), "positive"),
             ((*at_c, TILE, TILE), str(before), "negative"), ((*at_d, TILE, TILE), "", "negative")]
    features = []
    for window, raster, label in boxes:
        feature = QgsFeature(label_fields())
        feature.setGeometry(QgsGeometry.fromRect(rectangle(window_box(before, window))))
        feature.setAttributes([raster, label])
        features.append(feature)
    assert labels.dataProvider().addFeatures(features)[0]
    feedback = QgsProcessingFeedback()
    out = processing.run("rsir:find_similar_change", {
        "INDEX": str(index), "BEFORE": [before_layer], "AFTER": [after_layer], "LABELS": labels, "K": 3,
        "OTHER_PAIRS": False, "OUTPUT": "TEMPORARY_OUTPUT"}, feedback=feedback)["OUTPUT"]
    log = feedback.textLog()
    assert "2 positive and 2 negative example(s)" in log and "probability scores" in log
    features = sorted_features(out)
    block_b = rectangle(window_box(before, (*AT_B, TILE, TILE)))
    assert features[0].geometry().boundingBox().intersect(block_b).area() > 0.25 * block_b.area()
    assert all(0.0 <= f["score"] <= 1.0 for f in features)

    with pytest.raises(QgsProcessingException, match="Give an example"):
        processing.run("rsir:find_similar_change", {
            "INDEX": str(index), "BEFORE": [before_layer], "AFTER": [after_layer], "K": 3,
            "OUTPUT": "TEMPORARY_OUTPUT"})
