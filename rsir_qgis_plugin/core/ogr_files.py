"""GeoPackage and GeoJSON plumbing shared by the hits, labels, change, map and review files (*_io modules).

OGR only, no Qt: the command line, the Processing algorithms and the plugin's tasks all write through
here. Spatial references come from geometry.ogr_srs (x/y order, whatever the CRS's axis order says).
"""
from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .atomic import atomic_output, output_target
from .errors import RsirError

if TYPE_CHECKING:
    from .geometry import Ring

# The OGR field type of each kind of value a layer holds (osgeo.ogr constants, looked up when writing).
FIELD_TYPES = {"string": "OFTString", "int": "OFTInteger", "real": "OFTReal"}


def write_polygon_file(path: str | Path, index_dir: str | Path | None, write_gpkg: Callable[[str], None],
                       geojson: Callable[[], dict]) -> Path:
    """A result file the user named: .gpkg made by `write_gpkg(name)`, or .geojson/.json of `geojson()`.

    The path must be a new or regular file (a link to one is followed) outside `index_dir`
    (core.atomic.output_target); it is written atomically, and a full disk is one line, "disk full: PATH".
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".geojson", ".json", ".gpkg"):
        raise RsirError(f"{path}: unsupported output format '{suffix}' (use .gpkg or .geojson)")
    target = output_target(path, index_dir)
    data = gpkg_bytes(write_gpkg) if suffix == ".gpkg" else json.dumps(geojson()).encode("utf-8")
    with atomic_output(target, path) as tmp:
        tmp.write_bytes(data)
    return path


def gpkg_bytes(write: Callable[[str], None]) -> bytes:
    """The bytes of a GeoPackage that `write(name)` creates with OGR, made in GDAL's memory file system.

    Python then writes them, so a full disk is a plain OSError (ENOSPC) naming no temporary file, where
    GDAL's SQLite would raise a RuntimeError whose text a Python error handler (the CLI's) has taken.
    """
    from osgeo import gdal

    name = f"/vsimem/rsir-{uuid.uuid4().hex}.gpkg"
    try:
        write(name)
        handle = gdal.VSIFOpenL(name, "rb")
        try:
            size = gdal.VSIStatL(name).size
            return bytes(gdal.VSIFReadL(1, size, handle))
        finally:
            gdal.VSIFCloseL(handle)
    finally:
        for leftover in gdal.ReadDir("/vsimem/") or ():  # the file, and SQLite's journal if any
            if leftover.startswith(name[len("/vsimem/"):]):
                gdal.Unlink(f"/vsimem/{leftover}")


def open_vector_file(path: Path, what: str):
    """An OGR data source of an existing .gpkg/.geojson file, read only; RsirError in one line naming the file
    when it is missing ("no such {what}") or not one GDAL reads (labels files, review files)."""
    from osgeo import ogr

    ogr.UseExceptions()
    if not path.is_file():
        raise RsirError(f"{path}: no such {what}")
    try:
        source = ogr.Open(str(path))
    except RuntimeError as exc:
        raise RsirError(f"{path}: not a readable GeoPackage/GeoJSON file ({str(exc).strip()})") from None
    if source is None:
        raise RsirError(f"{path}: not a readable GeoPackage/GeoJSON file")
    return source


def write_polygon_layer(source, name: str, srs, fields: dict[str, str],
                        rows: Iterable[tuple[Ring, dict[str, Any]]]) -> None:
    """A polygon layer `name` in the OGR data source, with `fields` (name -> 'string' | 'int' | 'real')
    and one feature per (ring, values) row."""
    from osgeo import ogr

    layer = source.CreateLayer(name, srs, ogr.wkbPolygon)
    for field, kind in fields.items():
        layer.CreateField(ogr.FieldDefn(field, getattr(ogr, FIELD_TYPES[kind])))
    definition = layer.GetLayerDefn()
    for ring, values in rows:
        feature = ogr.Feature(definition)
        for field, value in values.items():
            feature.SetField(field, value)
        feature.SetGeometry(ogr_polygon(ring))
        layer.CreateFeature(feature)


def write_rings_layer(source, name: str, srs, fields: dict[str, str],
                      rows: Iterable[tuple[Sequence[Ring], dict[str, Any]]], metadata: dict | None = None) -> None:
    """A polygon layer `name` with `fields` and one feature per (rings, values) row, the rings an exterior
    then its holes; `metadata` as the layer's metadata items. One transaction, each geometry from WKB
    and each field set by index: by name OGR looks every field up again (maps of 10^5 polygons)."""
    from osgeo import ogr

    layer = source.CreateLayer(name, srs, ogr.wkbPolygon)
    for field, kind in fields.items():
        layer.CreateField(ogr.FieldDefn(field, getattr(ogr, FIELD_TYPES[kind])))
    for key, value in (metadata or {}).items():
        layer.SetMetadataItem(key, str(value))
    definition = layer.GetLayerDefn()
    columns = [(definition.GetFieldIndex(field), field) for field in fields]
    layer.StartTransaction()
    for rings, values in rows:
        feature = ogr.Feature(definition)
        for number, field in columns:
            feature.SetField(number, values[field])
        feature.SetGeometryDirectly(ogr.CreateGeometryFromWkb(polygon_wkb(rings)))
        layer.CreateFeature(feature)
    layer.CommitTransaction()


def polygon_wkb(rings: Sequence[Ring]) -> bytes:
    """A polygon's well-known binary (little-endian), each ring closed: one call to OGR, not one a point."""
    parts = [struct.pack("<BII", 1, 3, len(rings))]
    for ring in rings:
        points = np.asarray(ring, dtype="<f8")
        if not np.array_equal(points[0], points[-1]):
            points = np.concatenate([points, points[:1]])
        parts += [struct.pack("<I", len(points)), points.tobytes()]
    return b"".join(parts)


def polygon_rings(geometry) -> list[Ring] | str:
    """The rings (exterior, then holes; unclosed) of an OGR polygon, or what is wrong with the geometry."""
    from osgeo import ogr

    if geometry is None or geometry.IsEmpty():
        return "no geometry"
    if ogr.GT_Flatten(geometry.GetGeometryType()) != ogr.wkbPolygon:
        return f"a {geometry.GetGeometryName().lower()}, not a polygon"
    rings = []
    for number in range(geometry.GetGeometryCount()):
        points = [(p[0], p[1]) for p in geometry.GetGeometryRef(number).GetPoints() or ()]
        if len(points) > 1 and points[0] == points[-1]:
            points = points[:-1]
        if len(points) < 3 or not all(math.isfinite(v) for p in points for v in p):
            return "a ring of fewer than 3 points or with a coordinate that is not finite"
        rings.append(points)
    return rings


def rings_geojson(name: str, rows: Iterable[tuple[Sequence[Ring], dict[str, Any]]], crs_wkt: str,
                  members: dict[str, Any] | None = None) -> dict:
    """A FeatureCollection `name` of (rings, values) polygons in crs_wkt, with `members` at its top level."""
    collection: dict = {"type": "FeatureCollection", "name": name, **(members or {})}
    crs_member = geojson_crs(crs_wkt)
    if crs_member:
        collection["crs"] = crs_member
    collection["features"] = [
        {"type": "Feature", "properties": values,
         "geometry": {"type": "Polygon", "coordinates": [closed(ring) for ring in rings]}}
        for rings, values in rows]
    return collection


def ogr_polygon(ring: Ring):
    """An OGR polygon of one (closed) ring."""
    from osgeo import ogr

    linear = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ring:
        linear.AddPoint_2D(float(x), float(y))
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(linear)
    return polygon


def exterior_points(geometry) -> Ring | None:
    """All exterior-ring points of an OGR (multi)polygon, or None for no geometry or another kind."""
    from osgeo import ogr

    if geometry is None or geometry.IsEmpty():
        return None
    kind = ogr.GT_Flatten(geometry.GetGeometryType())
    if kind == ogr.wkbPolygon:
        parts = [geometry]
    elif kind == ogr.wkbMultiPolygon:
        parts = [geometry.GetGeometryRef(i) for i in range(geometry.GetGeometryCount())]
    else:
        return None
    points = []
    for part in parts:
        if part.GetGeometryCount():
            exterior = part.GetGeometryRef(0)
            points += [(p[0], p[1]) for p in exterior.GetPoints() or ()]  # one call, not one per point
    return points or None


def field_names(layer) -> list[str]:
    """An OGR layer's field names in lower case (labels files match them without regard to case)."""
    definition = layer.GetLayerDefn()
    return [definition.GetFieldDefn(i).GetName().lower() for i in range(definition.GetFieldCount())]


def closed(ring: Ring) -> list[list[float]]:
    """The ring as GeoJSON coordinates, its first point repeated at the end."""
    points = [[float(x), float(y)] for x, y in ring]
    return points + [points[0]] if points and points[0] != points[-1] else points


def geojson_polygon(ring: Ring, properties: dict[str, Any]) -> dict:
    """A GeoJSON polygon Feature of one ring."""
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [closed(ring)]},
            "properties": properties}


def geojson_crs(crs_wkt: str) -> dict | None:
    """The `crs` member that names a CRS other than WGS 84 the way GDAL and QGIS read it (None for WGS 84
    or no CRS: GeoJSON's default is WGS 84)."""
    from .geometry import crs_from

    if not crs_wkt or crs_from(crs_wkt) == crs_from("EPSG:4326"):
        return None
    return {"type": "name", "properties": {"name": ogc_urn(crs_from(crs_wkt).to_string())}}


def ogc_urn(authority: str) -> str:
    """'EPSG:3395' to the URN form GeoJSON's crs member uses; WKT-only CRSs keep their text."""
    if ":" in authority and authority.split(":")[0].isalpha() and " " not in authority:
        name, code = authority.split(":", 1)
        return f"urn:ogc:def:crs:{name}::{code}"
    return authority
