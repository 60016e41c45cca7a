"""Labels GeoPackages written feature by feature with OGR, as another tool would write them.

Not rsir's own writer (core/labels_io.write_labels): the benchmark and the hostile-input tests need files
rsir would never write (a NaN coordinate, an empty polygon, any CRS, 100,000 features). Like
benchmarks/scene_mosaic.py it lives here so that benchmarks need nothing from the test suite; tests import
it as `benchmarks.labels_gpkg`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

Ring = Sequence[tuple[float, float]]


def write_labels_gpkg(path: Path, features: Iterable[tuple[str, str, Ring | None]], epsg: int | None) -> Path:
    """Layer rsir_labels: one polygon per (raster, label, ring) feature; None is an empty polygon."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    srs = None
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = source.CreateLayer("rsir_labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("raster", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("label", ogr.OFTString))
    layer.StartTransaction()  # one transaction: 100,000 features in seconds, not minutes
    for raster, label, ring in features:
        polygon = ogr.Geometry(ogr.wkbPolygon)
        if ring is not None:
            linear = ogr.Geometry(ogr.wkbLinearRing)
            for x, y in [*ring, ring[0]]:
                linear.AddPoint_2D(float(x), float(y))
            polygon.AddGeometry(linear)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("raster", raster)
        feature.SetField("label", label)
        feature.SetGeometry(polygon)
        layer.CreateFeature(feature)
    layer.CommitTransaction()
    source = None  # closes the file
    return path
