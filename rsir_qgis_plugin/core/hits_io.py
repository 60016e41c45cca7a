"""Search results as GeoJSON or GeoPackage, in the CRS the user works in."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Callable

from .atomic import atomic_output, output_target
from .errors import RsirError
from .geometry import Ring, crs_from, ogr_srs, reproject_ring
from .search import SearchResult

HITS_LAYER = "rsir_hits"
QUERY_LAYER = "rsir_query"


def output_crs(result: SearchResult, crs: str | None) -> str:
    """The CRS results are written in: as asked, else the query raster's, else WGS 84."""
    if crs:
        return crs_from(crs).to_wkt()
    return result.query_crs_wkt or crs_from("EPSG:4326").to_wkt()


def hit_rings(result: SearchResult, crs_wkt: str) -> list[Ring]:
    return [_closed(reproject_ring(hit.polygon, hit.crs_wkt, crs_wkt)) for hit in result.hits]


def hits_to_geojson(result: SearchResult, crs: str | None = None) -> dict:
    """A FeatureCollection of the hits (properties rank, score, raster) in `crs` (default: the query's).

    A CRS other than WGS 84 is named in a `crs` member, as GDAL and QGIS read it; the query box
    rides along as the foreign member `query`.
    """
    target = output_crs(result, crs)
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                 "properties": {"rank": hit.rank, "score": round(hit.score, 6), "raster": hit.raster}}
                for hit, ring in zip(result.hits, hit_rings(result, target))]
    collection: dict = {"type": "FeatureCollection", "features": features}
    authority = crs_from(target).to_string()
    if crs_from(target) != crs_from("EPSG:4326"):
        collection["crs"] = {"type": "name", "properties": {"name": _ogc_urn(authority)}}
    if result.query_polygon:
        ring = _closed(reproject_ring(result.query_polygon, result.query_crs_wkt, target))
        collection["query"] = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                               "properties": {"raster": result.query_raster}}
    return collection


def write_hits(result: SearchResult, path: str | Path, crs: str | None = None,
               index_dir: str | Path | None = None) -> Path:
    """Write hits (and the query box) to .geojson or .gpkg, atomically; returns the path.

    The path must be a new or regular file (a link to one is followed) outside `index_dir`
    (core.atomic.output_target); a full disk is one line, "disk full: PATH".
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".geojson", ".json", ".gpkg"):
        raise RsirError(f"{path}: unsupported output format '{suffix}' (use .gpkg or .geojson)")
    target = output_target(path, index_dir)
    if suffix == ".gpkg":
        data = gpkg_bytes(lambda name: _write_gpkg(result, name, output_crs(result, crs)))
    else:
        data = json.dumps(hits_to_geojson(result, crs)).encode("utf-8")
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


def _write_gpkg(result: SearchResult, path: str, crs_wkt: str) -> None:
    from osgeo import ogr

    ogr.UseExceptions()
    srs = ogr_srs(crs_wkt)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    try:
        hits = source.CreateLayer(HITS_LAYER, srs, ogr.wkbPolygon)
        hits.CreateField(ogr.FieldDefn("rank", ogr.OFTInteger))
        hits.CreateField(ogr.FieldDefn("score", ogr.OFTReal))
        hits.CreateField(ogr.FieldDefn("raster", ogr.OFTString))
        for hit, ring in zip(result.hits, hit_rings(result, crs_wkt)):
            feature = ogr.Feature(hits.GetLayerDefn())
            feature.SetField("rank", hit.rank)
            feature.SetField("score", hit.score)
            feature.SetField("raster", hit.raster)
            feature.SetGeometry(_polygon(ring))
            hits.CreateFeature(feature)
        if result.query_polygon:
            query = source.CreateLayer(QUERY_LAYER, srs, ogr.wkbPolygon)
            query.CreateField(ogr.FieldDefn("raster", ogr.OFTString))
            feature = ogr.Feature(query.GetLayerDefn())
            feature.SetField("raster", result.query_raster)
            feature.SetGeometry(_polygon(_closed(reproject_ring(result.query_polygon, result.query_crs_wkt,
                                                                crs_wkt))))
            query.CreateFeature(feature)
    finally:
        source = None  # closing the data source flushes it to disk


def _polygon(ring: Ring):
    from osgeo import ogr

    linear = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ring:
        linear.AddPoint_2D(float(x), float(y))
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(linear)
    return polygon


def _closed(ring: Ring) -> list[list[float]]:
    points = [[float(x), float(y)] for x, y in ring]
    return points + [points[0]] if points and points[0] != points[-1] else points


def _ogc_urn(authority: str) -> str:
    """'EPSG:3395' to the URN form GeoJSON's crs member uses; WKT-only CRSs keep their text."""
    if ":" in authority and authority.split(":")[0].isalpha() and " " not in authority:
        name, code = authority.split(":", 1)
        return f"urn:ogc:def:crs:{name}::{code}"
    return authority
