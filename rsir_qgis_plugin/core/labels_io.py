"""Relevance-feedback labels as a GeoPackage or GeoJSON polygon layer, so a session of marking survives.

The layout (the plugin's `rsir labels` layer writes the same): one polygon per labelled box, a
`raster` field (the raster's path) and a `label` field ('positive' or 'negative'). Written in the
rasters' CRS when they share one, else in EPSG:4326; GeoPackage layer `rsir_labels`. Any polygon
layer with these two fields reads back, in any CRS: each box is reprojected to its raster's CRS,
so a tile (a marked hit) comes back as exactly that tile.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_output, output_target
from .errors import RsirError
from .feedback import Feedback, LabelledBox
from .geometry import Ring, crs_from, crs_name, ogr_srs, reaches_lonlat, reproject_ring
from .hits_io import _closed, _ogc_urn, _polygon, gpkg_bytes
from .untrusted_paths import local_raster_reason, network_reason

LABELS_LAYER = "rsir_labels"
POSITIVE, NEGATIVE = "positive", "negative"
FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
# Labels in one file: far more than an analyst marks by hand, or a whole index's tiles marked from a
# script; beyond it a search would embed more example boxes than it ranks tiles.
MAX_LABELS = 100_000


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
        if layer.GetFeatureCount() > MAX_LABELS:
            raise _too_many(path, layer.GetFeatureCount())
        srs = layer.GetSpatialRef()
        if srs is not None:
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        layer_crs = srs.ExportToWkt() if srs is not None else ""
        rows, skipped = _rows(layer, path)
    finally:
        source = None  # closes the file
    boxes = _placed(rows, layer_crs, skipped)
    return LabelsRead(Feedback(tuple(boxes)), [line for _, line in sorted(skipped, key=lambda s: s[0])])


def _too_many(path: Path, count: int) -> RsirError:
    return RsirError(f"{path}: holds {count:,} features; a labels file may hold at most {MAX_LABELS:,} "
                     "(keep the labels that matter, or split the file)")


@dataclass(frozen=True)
class _Row:
    """A feature that named a usable label, a local raster and a finite polygon."""

    fid: int
    raster: str
    ring: Ring
    positive: bool


def _rows(layer, path: Path) -> tuple[list[_Row], list[tuple[int, str]]]:
    """The layer's usable features, and (fid, reason) for each one left out."""
    rows: list[_Row] = []
    skipped: list[tuple[int, str]] = []
    base = path.resolve().parent
    local_reasons: dict[str, str | None] = {}  # a raster's file read once, however many labels name it
    definition = layer.GetLayerDefn()  # fields by index: by name, OGR looks each one up again
    label_field, raster_field = (_field_index(definition, name) for name in ("label", "raster"))
    layer.ResetReading()
    for feature in layer:
        if len(rows) + len(skipped) >= MAX_LABELS:  # GetFeatureCount may have been an estimate
            raise _too_many(path, layer.GetFeatureCount())
        fid = feature.GetFID()
        label = _text(feature.GetField(label_field))
        if label.lower() not in (POSITIVE, NEGATIVE):
            skipped.append((fid, f"feature {fid}: label '{label[:40]}' is neither '{POSITIVE}' nor "
                                 f"'{NEGATIVE}'"))
            continue
        raster = _text(feature.GetField(raster_field))
        if not raster:
            skipped.append((fid, f"feature {fid}: no raster given"))
            continue
        reason = network_reason(raster)  # before any GDAL call sees the path
        if reason is None:
            if not os.path.isabs(os.path.expanduser(raster)):
                raster = str(base / raster)  # relative to the labels file, which may have been moved with it
            if raster not in local_reasons:
                local_reasons[raster] = local_raster_reason(os.path.expanduser(raster))
            reason = local_reasons[raster]
        if reason:
            skipped.append((fid, f"feature {fid}: raster {raster[:160]!r} {reason}; a labels file may name "
                                 "local raster files only"))
            continue
        ring = _ring(feature.GetGeometryRef())
        if ring is None:
            skipped.append((fid, f"feature {fid}: no polygon geometry"))
            continue
        if not all(map(math.isfinite, itertools.chain.from_iterable(ring))):
            skipped.append((fid, f"feature {fid}: its polygon has a coordinate that is not a finite number"))
            continue
        rows.append(_Row(fid=fid, raster=raster, ring=ring, positive=label.lower() == POSITIVE))
    return rows, skipped


def _placed(rows: list[_Row], layer_crs: str, skipped: list[tuple[int, str]]) -> list[LabelledBox]:
    """Each row's box in its raster's CRS where both CRSs are known, else as given; rows PROJ cannot
    place, or whose box has no area, are added to `skipped`."""
    crs_of = _RasterCrs()
    places: list[tuple | str | None] = [None] * len(rows)
    by_crs: dict[str, list[int]] = {}  # raster CRS -> the rows to reproject to it, in one call
    for i, row in enumerate(rows):
        raster_crs = crs_of(row.raster)
        if layer_crs and raster_crs:
            by_crs.setdefault(raster_crs, []).append(i)
        else:  # a raster without a CRS, or one that cannot be opened (the search names what is wrong)
            places[i] = (_bounds(row.ring), layer_crs or None)
    for raster_crs, numbers in by_crs.items():
        for i, place in zip(numbers, _reprojected([rows[i].ring for i in numbers], layer_crs, raster_crs)):
            places[i] = place
    boxes = []
    for row, place in zip(rows, places):
        if isinstance(place, str):
            skipped.append((row.fid, f"feature {row.fid}: {place}"))
            continue
        bbox, crs = place
        if not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
            skipped.append((row.fid, f"feature {row.fid}: its box has no area"))
            continue
        boxes.append(LabelledBox(raster=row.raster, bbox=bbox, crs=crs, positive=row.positive))
    return boxes


def _reprojected(rings: list[Ring], src: str, dst: str) -> list[tuple | str]:
    """(bbox, dst) of each ring reprojected from `src` to `dst` (densified as geometry.reproject_ring does
    it, with numpy, and one PROJ call for all), or the reason a ring cannot be placed there."""
    from rasterio.warp import transform

    if crs_from(src) == crs_from(dst) or not (reaches_lonlat(src) and reaches_lonlat(dst)):
        return [(_bounds(ring), dst) for ring in rings]  # the same CRS, or a local one linked to no other
    source, target = crs_from(src), crs_from(dst)
    dense = _densified(rings)

    def unplaced(detail: str = "") -> str:
        return f"its polygon does not reproject to its raster's CRS ({crs_name(dst)}){detail}; is the " \
               "layer's CRS right?"

    def place(xs: np.ndarray, ys: np.ndarray) -> tuple | str:
        bbox = (float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys)))
        return (bbox, dst) if all(map(_finite, bbox)) else unplaced()

    try:
        xs, ys = transform(source, target, np.concatenate(dense)[:, 0], np.concatenate(dense)[:, 1])
    except Exception:  # rasterio fails the whole call for one point PROJ refuses: then ring by ring
        results: list[tuple | str] = []
        for points in dense:
            try:
                results.append(place(*map(np.asarray, transform(source, target, points[:, 0], points[:, 1]))))
            except Exception as exc:  # CPLE_AppDefinedError: "PROJ: utm: Invalid latitude" and the like
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                results.append(unplaced(f" (PROJ: {reason.removeprefix('PROJ: ')})"))
        return results
    starts = np.concatenate([[0], np.cumsum([len(points) for points in dense])[:-1]])
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    boxes = np.stack([np.minimum.reduceat(xs, starts), np.minimum.reduceat(ys, starts),
                      np.maximum.reduceat(xs, starts), np.maximum.reduceat(ys, starts)], axis=1)
    finite = np.isfinite(boxes).all(axis=1)  # min/max carry a NaN or an infinity through
    return [(tuple(map(float, box)), dst) if ok else unplaced() for box, ok in zip(boxes.tolist(), finite)]


def _densified(rings: list[Ring], points_per_edge: int = 8) -> list[np.ndarray]:
    """geometry.densify of each ring as an (n, 2) array, computed for all rings of one length at once."""
    out: list[np.ndarray | None] = [None] * len(rings)
    by_length: dict[int, list[int]] = {}
    for i, ring in enumerate(rings):
        by_length.setdefault(len(ring), []).append(i)
    steps = np.arange(points_per_edge) / points_per_edge
    for length, numbers in by_length.items():
        start = np.asarray([rings[i] for i in numbers], dtype=np.float64)  # (m, length, 2)
        end = np.roll(start, -1, axis=1)
        points = start[:, :, None, :] + (end - start)[:, :, None, :] * steps[None, None, :, None]
        for i, ring_points in zip(numbers, points.reshape(len(numbers), -1, 2)):
            out[i] = ring_points
    return out


def _field_index(definition, name: str) -> int:
    """The index of a field, matched without regard to case (as _labels_layer found it)."""
    names = [definition.GetFieldDefn(i).GetName().lower() for i in range(definition.GetFieldCount())]
    return names.index(name)


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
    srs = ogr_srs(crs_wkt)
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
            points += [(p[0], p[1]) for p in exterior.GetPoints() or ()]  # one call, not one per point
    return points or None


def _bounds(ring: Ring) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _text(value) -> str:
    return "" if value is None else str(value).strip()
