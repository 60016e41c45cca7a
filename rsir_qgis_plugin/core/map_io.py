"""Map files: the polygons of a match map (core/match_map.py) as GeoPackage or GeoJSON, and back.

The one reader and writer of the format. Layer `rsir_map`: one polygon (holes allowed) a feature, fields
map_id (int), raster (str), score_mean, score_max (real), tiles (int), area_m2 (real). How the map was
made (threshold, labels file, index, model, scoring, tiles scored) is the layer's metadata in a
GeoPackage and top-level members of a GeoJSON FeatureCollection. Polygons are written in their rasters'
CRS when all share one, else in EPSG:4326; the format follows the file's extension, as for hits.
Files from disk are untrusted: anything wrong is one line naming the file and the problem.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RsirError
from .geometry import Ring, crs_from, ogr_srs, reaches_lonlat
from .match_map import MappedPolygon, MatchMap
from .ogr_files import (
    field_names,
    open_vector_file,
    polygon_rings,
    rings_geojson,
    write_polygon_file,
    write_rings_layer,
)
from .safe_json import JsonLimitError, loads

MAP_LAYER = "rsir_map"
FIELDS = {"map_id": "int", "raster": "string", "score_mean": "real", "score_max": "real", "tiles": "int",
          "area_m2": "real"}
# How the map was made: metadata item (GeoPackage) / top-level member (GeoJSON) -> its type.
RECORD = {"threshold": float, "labels": str, "index": str, "model": str, "scoring": str, "tiles_scored": int}
EXPECTED = {"int": "a whole number >= 0", "real": "a finite number", "string": "a text"}
MAX_POLYGONS = 2_000_000  # a map of 10^6 tiles at a threshold of 0 holds at most that many
MAX_GEOJSON_BYTES = 1 << 30


def write_map(match_map: MatchMap, path: str | Path, index_dir: str | Path | None = None) -> Path:
    """Write the map to .gpkg or .geojson (by the extension), atomically; returns the path.

    The path must be a new or regular file outside `index_dir` (core.atomic.output_target).
    """
    crs_wkt = map_crs(match_map)
    polygons = _placed(match_map.polygons, crs_wkt)
    return write_polygon_file(path, index_dir, lambda name: _write_gpkg(match_map, polygons, crs_wkt, name),
                              lambda: map_to_geojson(match_map, polygons, crs_wkt))


def map_crs(match_map: MatchMap) -> str:
    """The CRS a map is written in: its polygons' when all share one, else WGS 84 ('' when none has one)."""
    known = {polygon.crs_wkt for polygon in match_map.polygons if polygon.crs_wkt}
    first = crs_from(next(iter(known))) if known else None
    if first is None or all(crs_from(wkt) == first for wkt in known):
        return first.to_wkt() if first else ""
    return crs_from("EPSG:4326").to_wkt()


def map_to_geojson(match_map: MatchMap, polygons: list[tuple[list[Ring], dict]], crs_wkt: str) -> dict:
    """A FeatureCollection named rsir_map of (rings, values) in crs_wkt, with the map's record as members."""
    return rings_geojson(MAP_LAYER, polygons, crs_wkt, _record(match_map))


def read_map(path: str | Path) -> MatchMap:
    """The map in a .gpkg or .geojson map file; RsirError naming the file and the problem otherwise."""
    path = Path(path)
    suffix = map_format(path)
    if not path.is_file():
        raise RsirError(f"{path}: no such map file")
    read = _read_gpkg if suffix == ".gpkg" else _read_geojson
    record, features, crs_wkt = read(path)
    polygons = tuple(_polygon(path, number, values, geometry, crs_wkt)
                     for number, (values, geometry) in enumerate(features, start=1))
    return MatchMap(polygons=polygons, **record)


def map_format(path: str | Path) -> str:
    """A map file's extension, lower case ('.gpkg', '.geojson' or '.json'); one line for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".gpkg", ".geojson", ".json"):
        raise RsirError(f"{path}: unsupported map format '{Path(path).suffix}' (use .gpkg or .geojson)")
    return suffix


def _record(match_map: MatchMap) -> dict[str, Any]:
    return {key: getattr(match_map, key) for key in RECORD}


def _placed(polygons: tuple[MappedPolygon, ...], crs_wkt: str) -> list[tuple[list[Ring], dict]]:
    """Each polygon's rings in crs_wkt (one reprojection call per source CRS) and its field values."""
    rings: list[list[Ring]] = [list(polygon.rings) for polygon in polygons]
    by_crs: dict[str, list[int]] = {}
    for number, polygon in enumerate(polygons):
        by_crs.setdefault(polygon.crs_wkt, []).append(number)
    for source, numbers in by_crs.items():
        if not (source and crs_wkt) or crs_from(source) == crs_from(crs_wkt):
            continue
        if not (reaches_lonlat(source) and reaches_lonlat(crs_wkt)):
            continue  # a local CRS links to no other: its coordinates stay as they are
        from rasterio.warp import transform

        # Corner rings of dissolved tiles: edges are densified so a reprojected edge keeps its curve.
        dense = [[_densified(ring) for ring in rings[i]] for i in numbers]
        xs = [x for poly in dense for ring in poly for x, _ in ring]
        ys = [y for poly in dense for ring in poly for _, y in ring]
        tx, ty = transform(crs_from(source), crs_from(crs_wkt), xs, ys)
        at = 0
        for i, poly in zip(numbers, dense):
            rings[i] = []
            for ring in poly:
                rings[i].append(list(zip(tx[at:at + len(ring)], ty[at:at + len(ring)])))
                at += len(ring)
    return [(polygon_rings, _values(polygon)) for polygon_rings, polygon in zip(rings, polygons)]


def _densified(ring: Ring, points_per_edge: int = 8) -> Ring:
    points = np.asarray(ring, dtype=np.float64)
    ends = np.roll(points, -1, axis=0)
    steps = np.arange(points_per_edge)[None, :, None] / points_per_edge
    return [tuple(p) for p in (points[:, None, :] + (ends - points)[:, None, :] * steps).reshape(-1, 2)]


def _values(polygon: MappedPolygon) -> dict[str, Any]:
    return {"map_id": polygon.map_id, "raster": polygon.raster, "score_mean": round(polygon.score_mean, 6),
            "score_max": round(polygon.score_max, 6), "tiles": polygon.tiles, "area_m2": round(polygon.area_m2, 3)}


def _write_gpkg(match_map: MatchMap, polygons: list[tuple[list[Ring], dict]], crs_wkt: str, name: str) -> None:
    from osgeo import ogr

    ogr.UseExceptions()
    source = ogr.GetDriverByName("GPKG").CreateDataSource(name)
    try:
        write_rings_layer(source, MAP_LAYER, ogr_srs(crs_wkt), FIELDS, polygons, _record(match_map))
    finally:
        source = None  # closing the data source flushes it


# A reader gives (the record, [(field values, rings or a problem)], the layer's CRS WKT).
Features = list[tuple[dict[str, Any], "list[Ring] | str"]]


def _read_gpkg(path: Path) -> tuple[dict, Features, str]:
    from osgeo import osr

    source = open_vector_file(path, "map file")
    try:
        layer = source.GetLayerByName(MAP_LAYER)
        if layer is None:
            raise RsirError(f"{path}: no layer '{MAP_LAYER}'; is this a map written by `rsir map`?")
        missing = [field for field in FIELDS if field not in field_names(layer)]
        if missing:
            raise RsirError(f"{path}: layer '{MAP_LAYER}' lacks the field(s) {', '.join(missing)}")
        record = _checked_record(path, layer.GetMetadata() or {}, text=True)
        srs = layer.GetSpatialRef()
        if srs is not None:
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        features: Features = []
        layer.ResetReading()
        for feature in layer:
            if len(features) >= MAX_POLYGONS:
                raise _too_many(path)
            values = {field: feature.GetField(field) for field in FIELDS}
            features.append((values, polygon_rings(feature.GetGeometryRef())))
        return record, features, srs.ExportToWkt() if srs is not None else ""
    finally:
        source = None


def _read_geojson(path: Path) -> tuple[dict, Features, str]:
    from osgeo import ogr

    ogr.UseExceptions()
    try:
        with open(path, "rb") as handle:
            data = loads(handle.read(MAX_GEOJSON_BYTES + 1), max_bytes=MAX_GEOJSON_BYTES)
    except OSError as exc:
        raise RsirError(f"{path}: cannot be read ({exc.strerror})") from None
    except JsonLimitError as exc:
        raise RsirError(f"{path}: not a GeoJSON map file: {exc}") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(
            data.get("features"), list):
        raise RsirError(f"{path}: not a GeoJSON FeatureCollection")
    if len(data["features"]) > MAX_POLYGONS:
        raise _too_many(path)
    record = _checked_record(path, data, text=False)
    crs_wkt = _geojson_crs_wkt(path, data.get("crs"))
    features: Features = []
    for feature in data["features"]:
        properties = feature.get("properties") if isinstance(feature, dict) else None
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        values = {field: properties.get(field) for field in FIELDS} if isinstance(properties, dict) else {}
        try:
            rings = polygon_rings(ogr.CreateGeometryFromJson(json.dumps(geometry))) if geometry else "no geometry"
        except RuntimeError:
            rings = "a geometry that is not GeoJSON"
        features.append((values, rings))
    return record, features, crs_wkt


def _geojson_crs_wkt(path: Path, member: Any) -> str:
    """The CRS a GeoJSON `crs` member names (WGS 84 without one)."""
    if member is None:
        return crs_from("EPSG:4326").to_wkt()
    name = member.get("properties", {}).get("name") if isinstance(member, dict) else None
    if not isinstance(name, str):
        raise RsirError(f"{path}: its 'crs' member names no CRS")
    try:
        return crs_from(name).to_wkt()
    except RsirError as exc:
        raise RsirError(f"{path}: {exc}") from None


def _checked_record(path: Path, found: dict, text: bool) -> dict[str, Any]:
    """The map's record from metadata items (text: GeoPackage) or JSON members, each of its type."""
    record = {}
    for key, kind in RECORD.items():
        value = found.get(key)
        if text and isinstance(value, str) and kind is not str:
            try:
                value = kind(value)
            except ValueError:
                value = None
        fits = (isinstance(value, str) if kind is str
                else isinstance(value, int) and not isinstance(value, bool) if kind is int
                else isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        if not fits:
            raise RsirError(f"{path}: the map's '{key}' is missing or not a {kind.__name__}; "
                            "is this a map written by `rsir map`?")
        record[key] = kind(value)
    return record


def _polygon(path: Path, number: int, values: dict[str, Any], rings: list[Ring] | str,
             crs_wkt: str) -> MappedPolygon:
    """Feature `number`'s polygon, its fields checked."""
    def fail(problem: str) -> RsirError:
        return RsirError(f"{path}: feature {number} of layer '{MAP_LAYER}' has {problem}")

    if isinstance(rings, str):
        raise fail(rings)
    checks: dict[str, Callable[[Any], bool]] = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "real": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "string": lambda v: isinstance(v, str) and bool(v.strip())}
    for field, kind in FIELDS.items():
        if not checks[kind](values.get(field)):
            raise fail(f"no valid '{field}' ({EXPECTED[kind]} expected)")
    return MappedPolygon(map_id=values["map_id"], raster=values["raster"], rings=tuple(rings), crs_wkt=crs_wkt,
                         score_mean=float(values["score_mean"]), score_max=float(values["score_max"]),
                         tiles=values["tiles"], area_m2=float(values["area_m2"]))


def _too_many(path: Path) -> RsirError:
    return RsirError(f"{path}: holds more than {MAX_POLYGONS:,} polygons, more than a map of rsir holds")
