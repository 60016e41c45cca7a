"""Relevance-feedback labels as a GeoPackage or GeoJSON polygon layer, so a session of marking survives.

The layout (the plugin's `rsir labels` layer writes the same): one polygon per labelled box, a
`raster` field (the raster's path) and a `label` field ('positive' or 'negative'). Written in the
rasters' CRS when they share one, else in EPSG:4326; GeoPackage layer `rsir_labels`. Any polygon
layer with these two fields reads back, in any CRS: each box is reprojected to its raster's CRS,
so a tile (a marked hit) comes back as exactly that tile.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_output, output_target
from .errors import RsirError
from .feedback import Feedback, LabelledBox
from .geometry import Ring, crs_from, reproject_ring
from .hits_io import _closed, _ogc_urn, _ogr_srs, _polygon, gpkg_bytes

LABELS_LAYER = "rsir_labels"
POSITIVE, NEGATIVE = "positive", "negative"
FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}


@dataclass(frozen=True)
class LabelsRead:
    """What a labels file gave: the examples, and one line for each feature left out."""

    feedback: Feedback
    skipped: list[str] = field(default_factory=list)


def write_labels(feedback: Feedback, path: str | Path, index_dir: str | Path | None = None) -> Path:
    """Write the labelled boxes to .gpkg (layer rsir_labels) or .geojson, atomically; returns the path.

    A box without a CRS is in its raster's CRS, which is read from the raster's file. The path must be
    a new or regular file outside `index_dir` (core.atomic.output_target); a full disk is one line.
    """
    path = Path(path)
    driver = labels_format(path)
    target = output_target(path, index_dir)
    crs_of = _RasterCrs()
    raster_crss, box_crss = [], []
    for number, box in enumerate(feedback.boxes, start=1):
        raster_crs = crs_of(box.raster)
        if raster_crs is None and not box.crs:
            raise RsirError(f"{box.raster}: cannot be opened to read its CRS, in which label {number} "
                            "is given; give the box's CRS")
        raster_crss.append(raster_crs if raster_crs is not None else box.crs)
        box_crss.append(box.crs or raster_crs)
    layer_crs = _layer_crs(raster_crss)
    if any(bool(crs) != bool(layer_crs) for crs in box_crss):
        raise RsirError(f"{path}: labels on a raster without a CRS cannot be saved together with labels "
                        "placed on the ground; save them to separate files")
    rings = [_closed(reproject_ring(_box_ring(box.bbox), crs, layer_crs))
             for box, crs in zip(feedback.boxes, box_crss)]
    rasters = [os.path.abspath(os.path.expanduser(box.raster)) for box in feedback.boxes]
    labels = [POSITIVE if box.positive else NEGATIVE for box in feedback.boxes]
    if driver == "GeoJSON":
        data = json.dumps(_geojson(rings, rasters, labels, layer_crs)).encode("utf-8")
    else:
        data = gpkg_bytes(lambda name: _write_gpkg(name, rings, rasters, labels, layer_crs))
    with atomic_output(target, path) as tmp:
        tmp.write_bytes(data)
    return path


def read_labels(path: str | Path) -> Feedback:
    """The labelled boxes of a GeoPackage/GeoJSON polygon layer with `raster` and `label` fields."""
    return load_labels(path).feedback


def load_labels(path: str | Path) -> LabelsRead:
    """read_labels, also saying which features were left out and why (no geometry, label neither
    'positive' nor 'negative', no raster), as the plugin's labels layer does."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    path = Path(path)
    labels_format(path)
    if not path.is_file():
        raise RsirError(f"{path}: no such labels file")
    try:
        source = ogr.Open(str(path))
    except RuntimeError as exc:
        raise RsirError(f"{path}: not a readable GeoPackage/GeoJSON file ({str(exc).strip()})") from None
    if source is None:
        raise RsirError(f"{path}: not a readable GeoPackage/GeoJSON file")
    try:
        layer = _labels_layer(source, path)
        srs = layer.GetSpatialRef()
        if srs is not None:
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        layer_crs = srs.ExportToWkt() if srs is not None else ""
        crs_of = _RasterCrs()
        boxes, skipped = [], []
        base = path.resolve().parent
        layer.ResetReading()
        for feature in layer:
            fid = feature.GetFID()
            label = _text(feature.GetField("label"))
            if label.lower() not in (POSITIVE, NEGATIVE):
                skipped.append(f"feature {fid}: label '{label}' is neither '{POSITIVE}' nor '{NEGATIVE}'")
                continue
            raster = _text(feature.GetField("raster"))
            if not raster:
                skipped.append(f"feature {fid}: no raster given")
                continue
            if not os.path.isabs(os.path.expanduser(raster)):
                raster = str(base / raster)  # relative to the labels file, which may have been moved with it
            ring = _ring(feature.GetGeometryRef())
            if ring is None:
                skipped.append(f"feature {fid}: no polygon geometry")
                continue
            bbox, crs = _bounds(ring), layer_crs or None
            raster_crs = crs_of(raster)
            if layer_crs and raster_crs:
                local = _bounds(reproject_ring(ring, layer_crs, raster_crs))
                if all(map(_finite, local)):
                    bbox, crs = local, raster_crs
            if not (bbox[0] < bbox[2] and bbox[1] < bbox[3]) or not all(map(_finite, bbox)):
                skipped.append(f"feature {fid}: its box has no area")
                continue
            boxes.append(LabelledBox(raster=raster, bbox=bbox, crs=crs, positive=label.lower() == POSITIVE))
    finally:
        source = None  # closes the file
    return LabelsRead(Feedback(tuple(boxes)), skipped)


def labels_format(path: str | Path) -> str:
    """The OGR driver for a labels file name ('GPKG' or 'GeoJSON'); an error for any other extension."""
    path = Path(path)
    driver = FORMATS.get(path.suffix.lower())
    if driver is None:
        raise RsirError(f"{path}: unsupported labels format '{path.suffix}' (use .gpkg or .geojson)")
    return driver


class _RasterCrs:
    """A raster's CRS as WKT ('' without one; None when the file cannot be opened), read once per path."""

    def __init__(self):
        self._known: dict[str, str | None] = {}

    def __call__(self, raster: str) -> str | None:
        if raster not in self._known:
            from .raster import open_dataset

            try:
                with open_dataset(raster) as dataset:
                    self._known[raster] = dataset.crs.to_wkt() if dataset.crs else ""
            except RsirError:
                self._known[raster] = None
        return self._known[raster]


def _layer_crs(raster_crss: list[str]) -> str:
    """The rasters' CRS when they share one, else WGS 84 ('' when none has a CRS)."""
    known = [crs for crs in raster_crss if crs]
    if not known:
        return ""
    first = crs_from(known[0])
    if all(crs_from(crs) == first for crs in known[1:]):
        return known[0]
    return crs_from("EPSG:4326").to_wkt()


def _box_ring(bbox) -> Ring:
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    return [(xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin)]


def _geojson(rings, rasters, labels, crs_wkt: str) -> dict:
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                 "properties": {"raster": raster, "label": label}}
                for ring, raster, label in zip(rings, rasters, labels)]
    collection: dict = {"type": "FeatureCollection", "name": LABELS_LAYER, "features": features}
    if crs_wkt and crs_from(crs_wkt) != crs_from("EPSG:4326"):
        collection["crs"] = {"type": "name", "properties": {"name": _ogc_urn(crs_from(crs_wkt).to_string())}}
    return collection


def _write_gpkg(path: str, rings, rasters, labels, crs_wkt: str) -> None:
    from osgeo import ogr

    ogr.UseExceptions()
    srs = _ogr_srs(crs_wkt)
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    try:
        layer = source.CreateLayer(LABELS_LAYER, srs, ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn("raster", ogr.OFTString))
        layer.CreateField(ogr.FieldDefn("label", ogr.OFTString))
        for ring, raster, label in zip(rings, rasters, labels):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("raster", raster)
            feature.SetField("label", label)
            feature.SetGeometry(_polygon(ring))
            layer.CreateFeature(feature)
    finally:
        source = None  # closing the data source flushes it to disk


def _labels_layer(source, path: Path):
    """The layer named rsir_labels, else the only polygon layer with `raster` and `label` fields."""
    from osgeo import ogr

    layers = [source.GetLayerByIndex(i) for i in range(source.GetLayerCount())]
    named = [layer for layer in layers if layer.GetName() == LABELS_LAYER]

    def fits(layer) -> bool:
        definition = layer.GetLayerDefn()
        names = {definition.GetFieldDefn(i).GetName().lower() for i in range(definition.GetFieldCount())}
        polygonal = ogr.GT_Flatten(layer.GetGeomType()) in (ogr.wkbPolygon, ogr.wkbMultiPolygon,
                                                            ogr.wkbUnknown)
        return {"raster", "label"} <= names and polygonal

    candidates = named or [layer for layer in layers if fits(layer)]
    if len(candidates) == 1 and fits(candidates[0]):
        return candidates[0]
    if named:
        raise RsirError(f"{path}: layer '{LABELS_LAYER}' is not a polygon layer with 'raster' and 'label' "
                        "fields")
    if not candidates:
        found = ", ".join(f"'{layer.GetName()}'" for layer in layers) or "none"
        raise RsirError(f"{path}: no polygon layer with 'raster' and 'label' fields (layers: {found})")
    names = ", ".join(f"'{layer.GetName()}'" for layer in candidates)
    raise RsirError(f"{path}: several label layers ({names}); name the one to use '{LABELS_LAYER}'")


def _ring(geometry) -> Ring | None:
    """All exterior-ring points of a (multi)polygon, or None for no geometry or another kind."""
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
            points += [exterior.GetPoint_2D(i) for i in range(exterior.GetPointCount())]
    return points or None


def _bounds(ring: Ring) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _text(value) -> str:
    return "" if value is None else str(value).strip()
