"""Map files (core/map_io.py): written as GeoPackage and GeoJSON and read back; bad files are one line."""
from __future__ import annotations

import json

import pytest
from osgeo import ogr

from rsir_qgis_plugin.core.errors import RsirError
from rsir_qgis_plugin.core.geometry import crs_from
from rsir_qgis_plugin.core.map_io import MAP_LAYER, read_map, write_map
from rsir_qgis_plugin.core.match_map import MappedPolygon, MatchMap

UTM = crs_from("EPSG:32633").to_wkt()
OUTER = [(500000.0, 4100300.0), (500300.0, 4100300.0), (500300.0, 4100000.0), (500000.0, 4100000.0)]
HOLE = [(500100.0, 4100200.0), (500200.0, 4100200.0), (500200.0, 4100100.0), (500100.0, 4100100.0)]


def _map(crs_b: str = UTM) -> MatchMap:
    ring = [(500400.0, 4100100.0), (500500.0, 4100100.0), (500500.0, 4100000.0), (500400.0, 4100000.0)]
    return MatchMap(
        polygons=(MappedPolygon(1, "/data/a.tif", (OUTER, HOLE), UTM, 0.8125, 0.97, 8, 80000.0),
                  MappedPolygon(2, "/data/b.tif", (ring,), crs_b, 0.61, 0.61, 1, 10000.0)),
        threshold=0.6, labels="/data/labels.gpkg", index="/data/index", model="rsir-x (sha256 abc)",
        scoring="probability", tiles_scored=1234)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_map_round_trip(tmp_path, suffix):
    written = _map()
    path = write_map(written, tmp_path / f"map{suffix}")
    read = read_map(path)
    assert (read.threshold, read.labels, read.index, read.model, read.scoring, read.tiles_scored) == (
        0.6, "/data/labels.gpkg", "/data/index", "rsir-x (sha256 abc)", "probability", 1234)
    assert crs_from(read.polygons[0].crs_wkt) == crs_from("EPSG:32633")
    for got, want in zip(read.polygons, written.polygons, strict=True):
        assert (got.map_id, got.raster, got.tiles) == (want.map_id, want.raster, want.tiles)
        assert got.score_mean == pytest.approx(want.score_mean) and got.area_m2 == pytest.approx(want.area_m2)
        assert [list(ring) for ring in got.rings] == [list(ring) for ring in want.rings]  # the hole kept
    assert read.tiles == 9 and read.area_m2 == pytest.approx(90000.0)
    source = ogr.Open(str(path))
    layer = source.GetLayerByName(MAP_LAYER) if suffix == ".gpkg" else source.GetLayer(0)
    assert layer.GetFeatureCount() == 2  # GDAL reads it: QGIS will
    feature = layer.GetNextFeature()  # kept: its geometry lives in it
    assert feature.GetGeometryRef().GetArea() == pytest.approx(80000.0)


def test_map_of_two_crss_is_written_in_wgs84(tmp_path):
    read = read_map(write_map(_map(crs_b=crs_from("EPSG:32634").to_wkt()), tmp_path / "map.geojson"))
    assert crs_from(read.polygons[0].crs_wkt) == crs_from("EPSG:4326")
    lon, lat = read.polygons[0].rings[0][0]
    assert 14.9 < lon < 15.1 and 37 < lat < 37.1  # EPSG:32633's central meridian is 15 E
    assert len(read.polygons[0].rings) == 2


def _bad_geojson(tmp_path, change) -> str:
    path = tmp_path / "map.geojson"
    write_map(_map(), path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RsirError) as error:
        read_map(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    return message


def test_bad_map_files_are_one_line(tmp_path):
    assert "threshold" in _bad_geojson(tmp_path, lambda d: d.pop("threshold"))
    assert "tiles_scored" in _bad_geojson(tmp_path, lambda d: d.update(tiles_scored="many"))
    assert "feature 2" in _bad_geojson(tmp_path, lambda d: d["features"][1]["properties"].update(tiles=-1))
    assert "feature 1" in _bad_geojson(tmp_path, lambda d: d["features"][0].update(geometry=None))
    assert "point" in _bad_geojson(tmp_path, lambda d: d["features"][0].update(
        geometry={"type": "Point", "coordinates": [1, 2]}))
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"not a geopackage")
    for path, words in ((tmp_path / "missing.gpkg", "no such map file"), (tmp_path / "map.shp", "unsupported"),
                        (garbage, "not a readable GeoPackage")):
        with pytest.raises(RsirError, match=words):
            read_map(path)
    other = tmp_path / "other.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(other))
    source.CreateLayer("something", None, ogr.wkbPolygon)
    source = None
    with pytest.raises(RsirError, match="no layer 'rsir_map'"):
        read_map(other)
