"""Labels files: GeoPackage (layer rsir_labels) and GeoJSON written and read back, in the rasters' CRS
or WGS 84; any polygon layer with `raster` and `label` fields reads, in any CRS."""
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsir_qgis_plugin.core.errors import RsirError
from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox
from rsir_qgis_plugin.core.labels_io import LABELS_LAYER, load_labels, read_labels, write_labels
from tests.conftest import write_raster


@pytest.fixture
def rasters(tmp_path):
    """Two small real GeoTIFFs: one in UTM 33N, one in Web Mercator."""
    pixels = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    utm = write_raster(tmp_path / "utm.tif", pixels, crs="EPSG:32633",
                       transform=from_origin(500_000.0, 4_000_000.0, 1.0, 1.0))
    mercator = write_raster(tmp_path / "mercator.tif", pixels, crs="EPSG:3857",
                            transform=from_origin(1_669_792.0, 4_865_942.0, 2.0, 2.0))
    return utm, mercator


def utm_boxes(utm):
    return (LabelledBox(str(utm), (500_010.0, 3_999_950.0, 500_042.0, 3_999_982.0), None, True),
            LabelledBox(str(utm), (500_000.0, 3_999_936.0, 500_016.0, 3_999_952.0), None, False))


def layer_info(path):
    from osgeo import ogr

    source = ogr.Open(str(path))
    layer = source.GetLayerByName(LABELS_LAYER) if path.suffix == ".gpkg" else source.GetLayer(0)
    srs = layer.GetSpatialRef()
    info = (layer.GetName(), srs.GetAuthorityCode(None) if srs else None, layer.GetFeatureCount(),
            [(f.GetField("raster"), f.GetField("label")) for f in layer])
    source = None
    return info


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_labels_of_one_crs_round_trip_exactly_in_that_crs(tmp_path, rasters, suffix):
    utm, _ = rasters
    feedback = Feedback(utm_boxes(utm))
    path = write_labels(feedback, tmp_path / f"labels{suffix}")
    name, code, count, fields = layer_info(path)
    assert code == "32633" and count == 2
    assert fields == [(str(utm), "positive"), (str(utm), "negative")]
    if suffix == ".gpkg":
        assert name == LABELS_LAYER
    back = read_labels(path)
    assert [(b.raster, b.positive) for b in back.boxes] == [(str(utm), True), (str(utm), False)]
    for got, given in zip(back.boxes, feedback.boxes):
        assert got.bbox == pytest.approx(given.bbox, abs=1e-6)
        assert rasterio.crs.CRS.from_user_input(got.crs) == rasterio.crs.CRS.from_epsg(32633)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_labels_on_rasters_of_different_crs_go_through_wgs84_and_come_back_as_the_same_boxes(
        tmp_path, rasters, suffix):
    utm, mercator = rasters
    boxes = utm_boxes(utm) + (LabelledBox(str(mercator), (1_669_800.0, 4_865_850.0, 1_669_864.0, 4_865_914.0),
                                          None, True),)
    path = write_labels(Feedback(boxes), tmp_path / f"mixed{suffix}")
    assert layer_info(path)[1] == "4326"
    back = read_labels(path)
    for got, given in zip(back.boxes, boxes):
        # reprojected to the raster's CRS ring by ring, not as an envelope of an envelope: a tile stays itself
        assert got.raster == given.raster and got.positive == given.positive
        assert got.bbox == pytest.approx(given.bbox, abs=1e-5)


def test_a_box_given_in_another_crs_is_saved_in_its_rasters_crs(tmp_path, rasters):
    from rasterio.warp import transform_bounds

    utm, _ = rasters
    box = utm_boxes(utm)[0]
    degrees = transform_bounds("EPSG:32633", "EPSG:4326", *box.bbox)
    path = write_labels(Feedback((LabelledBox(box.raster, degrees, "EPSG:4326", True),)), tmp_path / "l.gpkg")
    assert layer_info(path)[1] == "32633"
    got = read_labels(path).boxes[0]
    # the degree box's image in UTM holds the original box (it is the envelope of a curved outline)
    assert got.bbox[0] <= box.bbox[0] + 1e-6 and got.bbox[2] >= box.bbox[2] - 1e-6


def test_any_polygon_layer_with_the_two_fields_reads_in_any_crs(tmp_path, rasters):
    """As QGIS saves it: MultiPolygons in the project's CRS (Web Mercator), another layer name,
    other features the reader must leave out and say why, a raster path relative to the file."""
    from osgeo import ogr, osr

    from rsir_qgis_plugin.core.geometry import reproject_ring

    utm, _ = rasters
    box = utm_boxes(utm)[0].bbox
    ring = reproject_ring([(box[0], box[3]), (box[2], box[3]), (box[2], box[1]), (box[0], box[1])],
                          "EPSG:32633", "EPSG:3857")
    path = tmp_path / "from_qgis.gpkg"
    ogr.UseExceptions()
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("my labels", srs, ogr.wkbMultiPolygon)
    for name in ("raster", "label", "note"):
        layer.CreateField(ogr.FieldDefn(name, ogr.OFTString))

    def add(raster, label, geometry):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("raster", raster)
        feature.SetField("label", label)
        if geometry is not None:
            feature.SetGeometry(geometry)
        layer.CreateFeature(feature)

    wkt = "MULTIPOLYGON (((" + ", ".join(f"{x} {y}" for x, y in ring + ring[:1]) + ")))"
    add("utm.tif", " Positive ", ogr.CreateGeometryFromWkt(wkt))  # relative to the labels file
    add(str(utm), "maybe", ogr.CreateGeometryFromWkt(wkt))
    add("", "negative", ogr.CreateGeometryFromWkt(wkt))
    add(str(utm), "negative", None)
    source = None

    read = load_labels(path)
    assert len(read.feedback.boxes) == 1
    got = read.feedback.boxes[0]
    assert got.raster == str(utm) and got.positive and got.bbox == pytest.approx(box, abs=1e-5)
    assert len(read.skipped) == 3
    assert "label 'maybe' is neither 'positive' nor 'negative'" in read.skipped[0]
    assert "no raster given" in read.skipped[1] and "no polygon geometry" in read.skipped[2]


def test_a_geojson_without_crs_member_is_wgs84(tmp_path, rasters):
    from rasterio.warp import transform_bounds

    utm, _ = rasters
    box = utm_boxes(utm)[0].bbox
    xmin, ymin, xmax, ymax = transform_bounds("EPSG:32633", "EPSG:4326", *box)
    ring = [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]
    path = tmp_path / "hand.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"raster": str(utm), "label": "negative"}}]}))
    got = read_labels(path).boxes[0]
    assert not got.positive and got.bbox[0] <= box[0] + 1e-6 and got.bbox[3] >= box[3] - 1e-6
    assert got.bbox[2] - got.bbox[0] < 1.05 * (box[2] - box[0])


def test_a_raster_that_cannot_be_opened_keeps_the_box_in_the_files_crs(tmp_path, rasters):
    utm, _ = rasters
    path = write_labels(Feedback(utm_boxes(utm)), tmp_path / "labels.gpkg")
    utm.unlink()
    got = read_labels(path).boxes[0]
    assert got.bbox == pytest.approx(utm_boxes(utm)[0].bbox)
    assert rasterio.crs.CRS.from_user_input(got.crs) == rasterio.crs.CRS.from_epsg(32633)


def test_writing_is_atomic_and_replaces_the_file(tmp_path, rasters):
    utm, _ = rasters
    path = tmp_path / "labels.gpkg"
    write_labels(Feedback(utm_boxes(utm)), path)
    write_labels(Feedback(utm_boxes(utm)[:1]), path)
    assert len(read_labels(path).boxes) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("case, message", [
    ("suffix", "unsupported labels format '.shp' (use .gpkg or .geojson)"),
    ("missing", "no such labels file"),
    ("not_labels", "no polygon layer with 'raster' and 'label' fields (layers: 'rsir_hits')"),
    ("garbage", "not a readable GeoPackage/GeoJSON file"),
])
def test_bad_labels_files_are_one_clear_line(tmp_path, rasters, case, message):
    from rsir_qgis_plugin.core.hits_io import write_hits
    from rsir_qgis_plugin.core.results import SearchResult

    path = {"suffix": tmp_path / "l.shp", "missing": tmp_path / "none.gpkg",
            "not_labels": tmp_path / "hits.gpkg", "garbage": tmp_path / "bad.geojson"}[case]
    if case == "not_labels":
        write_hits(SearchResult(hits=[], query_polygon=None, query_crs_wkt="", query_raster=None,
                                provider="", seconds=0.0), path)
    if case == "garbage":
        path.write_text("{ not json")
    with pytest.raises(RsirError) as caught:
        read_labels(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_raster_without_crs_cannot_share_a_file_with_georeferenced_labels(tmp_path, rasters):
    utm, _ = rasters
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8") as dst:
        dst.write(np.zeros((3, 32, 32), np.uint8))
    lonely = LabelledBox(str(plain), (0.0, 0.0, 10.0, 10.0), None, True)
    with pytest.raises(RsirError, match="without a CRS cannot be saved together"):
        write_labels(Feedback(utm_boxes(utm) + (lonely,)), tmp_path / "l.gpkg")
    path = write_labels(Feedback((lonely,)), tmp_path / "alone.gpkg")
    assert read_labels(path).boxes[0].bbox == pytest.approx(lonely.bbox)
