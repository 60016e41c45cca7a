"""The `rsir labels` layer and its conversions: hits and drawn boxes to label features, features to the
engine's Feedback, and a GeoPackage written, reopened in a fresh project and read as the same Feedback.

Hits come from real searches of the real index (`town_index`); nothing here is mocked.
"""
from __future__ import annotations

import pytest
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)

from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.labels import convert, edit, files
from rsir_qgis_plugin.labels.layer import find_labels_layer, make_labels_layer

MAP = QgsCoordinateReferenceSystem("EPSG:3857")


@pytest.fixture(scope="module")
def hits(town_index, town_half):
    """Six hits of a real box search on the town raster (tile corners in EPSG:3395)."""
    import rasterio

    from rsir_qgis_plugin.core.search import search_box

    with rasterio.open(town_half) as src:
        left, top = src.bounds.left, src.bounds.top
    box = (left + 20.0, top - 30.0, left + 26.4, top - 23.6)
    return search_box(town_index, town_half, box, None, SearchParams(k=6)).hits


def _bounds(rect: QgsRectangle) -> tuple[float, float, float, float]:
    return rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()


def test_new_labels_layer_is_a_styled_polygon_memory_layer(project):
    layer = make_labels_layer(MAP)
    assert layer.isValid() and layer.providerType() == "memory"
    assert layer.name() == "rsir labels" and layer.crs() == MAP
    assert layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry
    assert layer.fields().names() == ["raster", "label"]
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "label"
    colors = {c.value(): c.symbol().symbolLayer(0).strokeColor().name() for c in renderer.categories()}
    assert colors["positive"] == "#00aa3c" and colors["negative"] == "#dc1e1e"
    # The user's work: QGIS asks before a project with unsaved labels is closed (unlike for the hits).
    assert not layer.customProperty("skipMemoryLayersCheck")
    project.addMapLayer(layer)
    assert find_labels_layer(project) is layer


def test_hit_becomes_a_label_on_its_tile_and_back(project, hits, town_half):
    context = project.transformContext()
    layer = make_labels_layer(MAP)
    hit = hits[2]
    geometry = convert.hit_geometry(hit, MAP, context)
    edit.add_label(layer, geometry, str(hit.raster), positive=False)
    [feature] = layer.getFeatures()
    assert feature["raster"] == str(town_half.resolve()) and feature["label"] == "negative"
    again = convert.hit_geometry(hit, MAP, context)
    assert edit.find_label(layer, str(hit.raster), again).id() == feature.id()
    assert edit.find_label(layer, str(hit.raster), convert.hit_geometry(hits[3], MAP, context)) is None
    assert edit.find_label(layer, "/elsewhere.tif", geometry) is None

    # The label, read as the engine's feedback, is the hit's tile in the raster's CRS when the raster is a
    # layer of the project, and the same box in the layer's CRS otherwise.
    expected = convert.box_for_hit(hit, positive=False)
    assert expected == LabelledBox(raster=str(hit.raster), bbox=convert.ring_bounds(hit.polygon),
                                   crs=hit.crs_wkt, positive=False)
    raster_layer = _raster_layer(project, town_half)
    read = convert.feedback_from_layer(layer, convert.footprints([raster_layer]), context)
    [box] = read.feedback.boxes
    assert box.raster == expected.raster and box.positive is False and read.skipped == []
    assert box.crs == "EPSG:3395"
    assert box.bbox == pytest.approx(expected.bbox, abs=1e-4)
    [in_map] = convert.feedback_from_layer(layer).feedback.boxes
    assert in_map.crs == "EPSG:3857"
    assert in_map.bbox == pytest.approx(_bounds(geometry.boundingBox()))
    assert in_map.bbox != pytest.approx(expected.bbox, abs=1.0)  # really the map's coordinates


def test_labels_changed_and_removed_in_place(project, hits):
    context = project.transformContext()
    layer = make_labels_layer(MAP)
    ids = [edit.add_label(layer, convert.hit_geometry(h, MAP, context), str(h.raster), True)
           for h in hits[:3]]
    edit.set_label(layer, ids[1], positive=False)
    edit.remove_label(layer, ids[0])
    counts = edit.count_labels(layer)
    assert (counts.positive, counts.negative, counts.other) == (1, 1, 0)
    # In the user's edit session the changes go to the edit buffer, and are read from it.
    layer.startEditing()
    edit.set_label(layer, ids[2], positive=False)
    assert edit.count_labels(layer).negative == 2
    assert layer.editBuffer().changedAttributeValues()
    layer.rollBack()
    assert edit.count_labels(layer).negative == 1


def test_features_without_raster_or_with_odd_labels(project, town_half):
    """A feature digitized by hand, raster left empty, gets the raster under it; bad ones are named."""
    raster_layer = _raster_layer(project, town_half)
    context = project.transformContext()
    inside = QgsRectangle(raster_layer.extent().center().x() - 5, raster_layer.extent().center().y() - 5,
                          raster_layer.extent().center().x() + 5, raster_layer.extent().center().y() + 5)
    layer = make_labels_layer(raster_layer.crs())
    fields = layer.fields()
    rows = [(inside, None, " Positive "), (inside, "", "maybe"), (QgsRectangle(0, 0, 10, 10), "", "negative")]
    features = []
    for rect, raster, label in rows:
        feature = QgsFeature(fields)
        feature.setGeometry(QgsGeometry.fromRect(rect))
        feature.setAttributes([raster, label])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    read = convert.feedback_from_layer(layer, convert.footprints([raster_layer]), context)
    [box] = read.feedback.boxes
    assert box.raster == str(town_half) and box.positive and box.bbox == pytest.approx(_bounds(inside))
    assert len(read.skipped) == 2
    assert "'maybe' is neither" in read.skipped[0] and "none of the project's rasters" in read.skipped[1]
    assert (read.positives, read.negatives) == (1, 0)


def test_drawn_box_and_feedback_back_to_features(project, town_half):
    raster_layer = _raster_layer(project, town_half)
    centre = raster_layer.extent().center()
    local = QgsRectangle(centre.x() - 4, centre.y() - 3, centre.x() + 4, centre.y() + 3)
    drawn = convert.box_geometry(local, raster_layer.crs(), MAP, project.transformContext()).boundingBox()
    box = convert.box_for_drawn(drawn, MAP, str(town_half), positive=True)
    assert box.crs == "EPSG:3857" and box.bbox == _bounds(drawn)
    # Feedback (from the CLI's labelled boxes, say) back to label features in the layer's CRS.
    feedback = Feedback((box, LabelledBox(str(town_half), _bounds(local), None, False)))
    features = convert.features_from_feedback(feedback, MAP, project.transformContext())
    assert [f["label"] for f in features] == ["positive", "negative"]
    assert _bounds(features[0].geometry().boundingBox()) == pytest.approx(box.bbox, abs=1e-6)
    # The second box had no CRS: the raster's (EPSG:3395), now in the map's.
    assert _bounds(features[1].geometry().boundingBox()) == pytest.approx(_bounds(drawn), abs=0.01)


def test_geopackage_round_trip_in_a_fresh_project(project, hits, tmp_path):
    context = project.transformContext()
    layer = make_labels_layer(MAP)
    for hit, positive in zip(hits, (True, True, False, True, False, False)):
        edit.add_label(layer, convert.hit_geometry(hit, MAP, context), str(hit.raster), positive)
    before = convert.feedback_from_layer(layer).feedback
    path = tmp_path / "session.gpkg"
    # A file that already holds another layer (saved hits, say) keeps it.
    other = QgsVectorLayer("Point?crs=EPSG:3857&field=x:integer", "other", "memory")
    from qgis.core import QgsVectorFileWriter

    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "rsir_hits"
    QgsVectorFileWriter.writeAsVectorFormatV3(other, str(path), QgsCoordinateTransformContext(), options)
    assert files.write_label_layer(list(layer.getFeatures()), layer.crs(), path, context) == path
    assert QgsVectorLayer(f"{path}|layername=rsir_hits", "h", "ogr").isValid()

    # A new session: the file added the way the Browser adds it is found, adopted and styled.
    QgsProject.instance().clear()
    reopened = QgsVectorLayer(f"{path}|layername=rsir_labels", "rsir_labels", "ogr")
    assert reopened.isValid() and reopened.crs() == MAP and reopened.featureCount() == 6
    QgsProject.instance().addMapLayer(reopened)
    assert find_labels_layer(QgsProject.instance()) is reopened
    assert isinstance(reopened.renderer(), QgsCategorizedSymbolRenderer)
    after = convert.feedback_from_layer(reopened).feedback
    def described(feedback):
        return [(b.raster, b.positive, b.crs) for b in feedback.boxes]

    assert described(after) == described(before)
    for a, b in zip(after.boxes, before.boxes):
        assert a.bbox == pytest.approx(b.bbox, abs=1e-6)
    assert files.open_labels_file(path).featureCount() == 6
    assert files.open_labels_file(tmp_path / "missing.gpkg") is None


def test_relative_raster_paths_start_at_the_labels_file(project, hits, tmp_path):
    """A labels file moved with its rasters (paths edited to be relative) still finds them."""
    import os

    context = project.transformContext()
    layer = make_labels_layer(MAP)
    raster = str(hits[0].raster)
    relative = os.path.relpath(raster, tmp_path)
    edit.add_label(layer, convert.hit_geometry(hits[0], MAP, context), relative, True)
    path = files.write_label_layer(list(layer.getFeatures()), MAP, tmp_path / "moved.gpkg", context)
    opened = files.open_labels_file(path)
    assert files.labels_dir(opened) == tmp_path and files.labels_dir(layer) is None
    [box] = convert.feedback_from_layer(opened).feedback.boxes
    assert box.raster == raster
    [as_given] = convert.feedback_from_layer(layer).feedback.boxes  # a memory layer has no folder
    assert as_given.raster == relative


def test_write_label_layer_to_an_unwritable_place_says_so(project, tmp_path):
    from rsir_qgis_plugin.core.errors import RsirError

    with pytest.raises(RsirError, match="cannot write"):
        files.write_label_layer([], MAP, tmp_path / "no_such_folder" / "labels.gpkg")


def _raster_layer(project, path):
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(path), "town", "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def test_the_plugin_and_the_cli_read_each_others_labels_files(project, hits, town_half, tmp_path):
    """`rsir search --labels FILE` (core.labels_io) and the plugin's Save/Load labels share one layout."""
    from rsir_qgis_plugin.core.labels_io import read_labels, write_labels

    context = project.transformContext()
    layer = make_labels_layer(MAP)
    for hit, positive in zip(hits[:4], (True, False, True, False)):
        edit.add_label(layer, convert.hit_geometry(hit, MAP, context), str(hit.raster), positive)
    from_plugin = tmp_path / "plugin.gpkg"
    files.write_label_layer(list(layer.getFeatures()), layer.crs(), from_plugin, context)
    engine_read = read_labels(from_plugin)  # each ring back in its raster's CRS
    assert [b.positive for b in engine_read.boxes] == [True, False, True, False]
    for box, hit in zip(engine_read.boxes, hits):
        assert box.raster == str(hit.raster)
        assert box.bbox == pytest.approx(convert.ring_bounds(hit.polygon), abs=1e-3)

    from_cli = tmp_path / "cli.gpkg"
    marks = (True, True, False, False)
    write_labels(Feedback(tuple(convert.box_for_hit(h, p) for h, p in zip(hits[:4], marks))), from_cli)
    opened = files.open_labels_file(from_cli)
    assert opened is not None and opened.featureCount() == 4
    raster_layer = _raster_layer(project, town_half)
    read = convert.feedback_from_layer(opened, convert.footprints([raster_layer]), context)
    assert [b.positive for b in read.feedback.boxes] == [True, True, False, False] and read.skipped == []
    for box, hit in zip(read.feedback.boxes, hits):
        assert box.bbox == pytest.approx(convert.ring_bounds(hit.polygon), abs=1e-3)
