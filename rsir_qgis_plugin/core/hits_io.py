"""Search results as GeoJSON or GeoPackage, in the CRS the user works in."""
from __future__ import annotations

from pathlib import Path

from .geometry import Ring, crs_from, ogr_srs, reproject_ring
from .ogr_files import closed, geojson_crs, geojson_polygon, write_polygon_file, write_polygon_layer
from .results import SearchResult

HITS_LAYER = "rsir_hits"
QUERY_LAYER = "rsir_query"


def output_crs(result: SearchResult, crs: str | None) -> str:
    """The CRS results are written in: as asked, else the query raster's, else WGS 84."""
    if crs:
        return crs_from(crs).to_wkt()
    return result.query_crs_wkt or crs_from("EPSG:4326").to_wkt()


def hit_rings(result: SearchResult, crs_wkt: str) -> list[Ring]:
    return [closed(reproject_ring(hit.polygon, hit.crs_wkt, crs_wkt)) for hit in result.hits]


def hits_to_geojson(result: SearchResult, crs: str | None = None) -> dict:
    """A FeatureCollection of the hits (properties rank, score, raster) in `crs` (default: the query's).

    A CRS other than WGS 84 is named in a `crs` member, as GDAL and QGIS read it; the query box
    rides along as the foreign member `query`.
    """
    target = output_crs(result, crs)
    features = [geojson_polygon(ring, {"rank": hit.rank, "score": round(hit.score, 6), "raster": hit.raster})
                for hit, ring in zip(result.hits, hit_rings(result, target))]
    collection: dict = {"type": "FeatureCollection", "features": features}
    crs_member = geojson_crs(target)
    if crs_member:
        collection["crs"] = crs_member
    if result.query_polygon:
        ring = reproject_ring(result.query_polygon, result.query_crs_wkt, target)
        collection["query"] = geojson_polygon(ring, {"raster": result.query_raster})
    return collection


def write_hits(result: SearchResult, path: str | Path, crs: str | None = None,
               index_dir: str | Path | None = None) -> Path:
    """Write hits (and the query box) to .geojson or .gpkg, atomically; returns the path.

    The path must be a new or regular file (a link to one is followed) outside `index_dir`
    (core.atomic.output_target); a full disk is one line, "disk full: PATH".
    """
    return write_polygon_file(path, index_dir, lambda name: _write_gpkg(result, name, output_crs(result, crs)),
                              lambda: hits_to_geojson(result, crs))


def _write_gpkg(result: SearchResult, path: str, crs_wkt: str) -> None:
    from osgeo import ogr

    ogr.UseExceptions()
    srs = ogr_srs(crs_wkt)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    try:
        write_polygon_layer(source, HITS_LAYER, srs, {"rank": "int", "score": "real", "raster": "string"},
                            ((ring, {"rank": hit.rank, "score": hit.score, "raster": hit.raster})
                             for hit, ring in zip(result.hits, hit_rings(result, crs_wkt))))
        if result.query_polygon:
            ring = closed(reproject_ring(result.query_polygon, result.query_crs_wkt, crs_wkt))
            write_polygon_layer(source, QUERY_LAYER, srs, {"raster": "string"},
                                [(ring, {"raster": result.query_raster})])
    finally:
        source = None  # closing the data source flushes it to disk
