"""Change results (hot spots, search by change) as GeoJSON or GeoPackage, like search hits (core/hits_io.py).

Layer `rsir_changes`: one polygon a place (the before raster's tile), fields rank, score, before, after;
a search by change adds its example boxes as layer `rsir_change_examples` (field label: positive/negative).
GeoJSON holds the places as features and the examples as the foreign member `examples`.
"""
from __future__ import annotations

from pathlib import Path

from .change_results import ChangeResult
from .geometry import Ring, crs_from, ogr_srs, reproject_ring
from .ogr_files import closed, geojson_crs, geojson_polygon, write_polygon_file, write_polygon_layer

CHANGES_LAYER = "rsir_changes"
EXAMPLES_LAYER = "rsir_change_examples"
FIELDS = {"rank": "int", "score": "real", "before": "string", "after": "string"}


def changes_crs(result: ChangeResult, crs: str | None) -> str:
    """The CRS results are written in: as asked, else the first before raster's, else WGS 84."""
    if crs:
        return crs_from(crs).to_wkt()
    return result.crs_wkt or crs_from("EPSG:4326").to_wkt()


def _rows(result: ChangeResult, crs_wkt: str) -> list[tuple[Ring, dict]]:
    return [(reproject_ring(hit.hit.polygon, hit.hit.crs_wkt, crs_wkt),
             {"rank": hit.rank, "score": round(hit.score, 6), "before": hit.before, "after": hit.after})
            for hit in result.hits]


def _example_rows(result: ChangeResult, crs_wkt: str) -> list[tuple[Ring, dict]]:
    boxes = result.examples.boxes if result.examples else ()
    return [(reproject_ring(ring, result.crs_wkt, crs_wkt), {"label": box.label, "raster": box.raster})
            for box, ring in zip(boxes, result.example_polygons)]


def changes_to_geojson(result: ChangeResult, crs: str | None = None) -> dict:
    """A FeatureCollection of the places (properties rank, score, before, after) in `crs`."""
    target = changes_crs(result, crs)
    collection: dict = {"type": "FeatureCollection", "scoring": result.scoring,
                        "features": [geojson_polygon(ring, values) for ring, values in _rows(result, target)]}
    crs_member = geojson_crs(target)
    if crs_member:
        collection["crs"] = crs_member
    examples = _example_rows(result, target)
    if examples:
        collection["examples"] = [geojson_polygon(ring, values) for ring, values in examples]
    return collection


def write_changes(result: ChangeResult, path: str | Path, crs: str | None = None,
                  index_dir: str | Path | None = None) -> Path:
    """Write the places (and example boxes) to .geojson or .gpkg, atomically; returns the path.

    The path must be a new or regular file outside `index_dir` (core.atomic.output_target).
    """
    return write_polygon_file(path, index_dir, lambda name: _write_gpkg(result, name, changes_crs(result, crs)),
                              lambda: changes_to_geojson(result, crs))


def _write_gpkg(result: ChangeResult, path: str, crs_wkt: str) -> None:
    from osgeo import ogr

    ogr.UseExceptions()
    srs = ogr_srs(crs_wkt)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    try:
        write_polygon_layer(source, CHANGES_LAYER, srs, FIELDS,
                            ((closed(ring), values) for ring, values in _rows(result, crs_wkt)))
        examples = _example_rows(result, crs_wkt)
        if examples:
            write_polygon_layer(source, EXAMPLES_LAYER, srs, {"label": "string", "raster": "string"},
                                ((closed(ring), values) for ring, values in examples))
    finally:
        source = None  # closing the data source flushes it to disk
