"""Relevance-feedback labels as a GeoPackage or GeoJSON polygon layer, so a session of marking survives.

The OGR side of the labels layout (label_records holds its words and the one reading of its features;
the plugin's `rsir labels` layer writes the same): one polygon per labelled box, a
`raster` field (the raster's path) and a `label` field ('positive' or 'negative'). Written in the
rasters' CRS when they share one, else in EPSG:4326; GeoPackage layer `rsir_labels`. Any polygon
layer with these two fields reads back, in any CRS: each box is reprojected to its raster's CRS,
so a tile (a marked hit) comes back as exactly that tile.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import atomic_output, output_target
from .errors import RsirError
from .examples import Feedback
from .geometry import Ring, crs_from, ogr_srs, reproject_ring
from .label_records import (
    LABEL_FIELD,
    LABELS_LAYER,
    RASTER_FIELD,
    LabelRecord,
    LabelsRead,
    label_text,
    labelled_boxes,
)
from .ogr_files import (
    closed,
    exterior_points,
    field_names,
    geojson_crs,
    geojson_polygon,
    gpkg_bytes,
    open_vector_file,
    write_polygon_layer,
)

FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
# Labels in one file: far more than an analyst marks by hand, or a whole index's tiles marked from a
# script; beyond it a search would embed more example boxes than it ranks tiles.
MAX_LABELS = 100_000


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
    rings = [closed(reproject_ring(_box_ring(box.bbox), crs, layer_crs))
             for box, crs in zip(feedback.boxes, box_crss)]
    values = [{RASTER_FIELD: os.path.abspath(os.path.expanduser(box.raster)),
               LABEL_FIELD: label_text(box.positive)} for box in feedback.boxes]
    if driver == "GeoJSON":
        data = json.dumps(_geojson(rings, values, layer_crs)).encode("utf-8")
    else:
        data = gpkg_bytes(lambda name: _write_gpkg(name, rings, values, layer_crs))
    with atomic_output(target, path) as tmp:
        tmp.write_bytes(data)
    return path


def read_labels(path: str | Path) -> Feedback:
    """The labelled boxes of a GeoPackage/GeoJSON polygon layer with `raster` and `label` fields."""
    return load_labels(path).feedback


def load_labels(path: str | Path) -> LabelsRead:
    """read_labels, also saying which features were left out and why (no geometry, a coordinate that is
    not finite, label neither 'positive' nor 'negative', no raster, a raster that is not a local file,
    a polygon PROJ cannot place in its raster's CRS), as the plugin's labels layer does.

    Linear in the features: each raster's CRS is read once, and the polygons of each raster CRS are
    reprojected in one PROJ call. A file of more than MAX_LABELS features is refused in one line.
    """
    from osgeo import ogr, osr

    ogr.UseExceptions()
    path = Path(path)
    labels_format(path)
    source = open_vector_file(path, "labels file")
    try:
        layer = _labels_layer(source, path)
        if layer.GetFeatureCount() > MAX_LABELS:
            raise _too_many(path, layer.GetFeatureCount())
        srs = layer.GetSpatialRef()
        if srs is not None:
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        layer_crs = srs.ExportToWkt() if srs is not None else ""
        records = _records(layer, path)
    finally:
        source = None  # closes the file
    return labelled_boxes(records, layer_crs, raster_crs=_RasterCrs(), base_dir=path.resolve().parent)


def _too_many(path: Path, count: int) -> RsirError:
    return RsirError(f"{path}: holds {count:,} features; a labels file may hold at most {MAX_LABELS:,} "
                     "(keep the labels that matter, or split the file)")


def _records(layer, path: Path) -> list[LabelRecord]:
    """The layer's features as records (label_records decides which are usable)."""
    names = field_names(layer)  # fields by index: by name, OGR looks each one up again
    label_field, raster_field = names.index(LABEL_FIELD), names.index(RASTER_FIELD)
    records: list[LabelRecord] = []
    layer.ResetReading()
    for feature in layer:
        if len(records) >= MAX_LABELS:  # GetFeatureCount may have been an estimate
            raise _too_many(path, layer.GetFeatureCount())
        records.append(LabelRecord(fid=feature.GetFID(), raster=_text(feature.GetField(raster_field)),
                                   label=_text(feature.GetField(label_field)),
                                   ring=exterior_points(feature.GetGeometryRef())))
    return records


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


def _geojson(rings: list[list[list[float]]], values: list[dict], crs_wkt: str) -> dict:
    features = [geojson_polygon(ring, properties) for ring, properties in zip(rings, values)]
    collection: dict = {"type": "FeatureCollection", "name": LABELS_LAYER, "features": features}
    crs_member = geojson_crs(crs_wkt)
    if crs_member:
        collection["crs"] = crs_member
    return collection


def _write_gpkg(path: str, rings: list[list[list[float]]], values: list[dict], crs_wkt: str) -> None:
    from osgeo import ogr

    ogr.UseExceptions()
    source = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    try:
        write_polygon_layer(source, LABELS_LAYER, ogr_srs(crs_wkt),
                            {RASTER_FIELD: "string", LABEL_FIELD: "string"}, zip(rings, values))
    finally:
        source = None  # closing the data source flushes it to disk


def _labels_layer(source, path: Path):
    """The layer named rsir_labels, else the only polygon layer with `raster` and `label` fields."""
    from osgeo import ogr

    layers = [source.GetLayerByIndex(i) for i in range(source.GetLayerCount())]
    named = [layer for layer in layers if layer.GetName() == LABELS_LAYER]

    def fits(layer) -> bool:
        polygonal = ogr.GT_Flatten(layer.GetGeomType()) in (ogr.wkbPolygon, ogr.wkbMultiPolygon,
                                                            ogr.wkbUnknown)
        return {RASTER_FIELD, LABEL_FIELD} <= set(field_names(layer)) and polygonal

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


def _text(value) -> str:
    return "" if value is None else str(value).strip()
