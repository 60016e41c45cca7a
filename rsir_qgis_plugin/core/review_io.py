"""Review files: a map's sample of polygons to mark yes/no (core/review.py draws it), as GeoPackage or
GeoJSON by the file's extension; read back for the estimate, and written again as labels.

The one reader and writer of the format. Layer `rsir_review`: one polygon a sampled map polygon (holes
kept), in the map file's CRS, in the order to review them, with fields
    map_id, raster, score (its score_max)     as in the map (core/map_io.py)
    stratum, strata                           its score stratum (1 = lowest scores) and how many there are
    stratum_size, stratum_low, stratum_high   the stratum's polygons in the whole map and score range
    relevant                                  empty until marked: 'yes' or 'no'
Every feature carries its stratum's figures, so the file needs nothing else to be estimated from (layer
metadata would not survive an edit of a GeoJSON file in QGIS). Files from disk are untrusted: anything
wrong is one line naming the file, the feature and the problem.

The reviewed polygons become labels (core/labels_io.py: rsir_labels, positive = relevant): each its
bounding box on its raster, so a one-tile polygon is exactly that tile, whose stored vector the next
feedback search uses.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import RsirError
from .examples import Feedback, LabelledBox
from .geometry import Ring, crs_from, ogr_srs, reproject_ring
from .ogr_files import (
    field_names,
    open_vector_file,
    polygon_rings,
    rings_geojson,
    write_polygon_file,
    write_rings_layer,
)
from .review import PrecisionEstimate, Sample, Stratum, estimate_precision

REVIEW_LAYER = "rsir_review"
FIELDS = {"map_id": "int", "raster": "string", "score": "real", "stratum": "int", "strata": "int",
          "stratum_size": "int", "stratum_low": "real", "stratum_high": "real", "relevant": "string"}
YES, NO = "yes", "no"
ANSWERS = {"yes": True, "y": True, "true": True, "1": True, "positive": True,
           "no": False, "n": False, "false": False, "0": False, "negative": False}
MAX_FEATURES = 100_000  # far more than anyone reviews by hand


@dataclass(frozen=True)
class ReviewItem:
    """One sampled polygon: where it is, its score and stratum, and the mark (None: not marked yet)."""

    map_id: int
    raster: str
    score: float
    stratum: int
    rings: tuple[Ring, ...]  # exterior, then holes, in the review's CRS
    relevant: bool | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        xs = [x for x, _ in self.rings[0]]
        ys = [y for _, y in self.rings[0]]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class Review:
    """A sample to review and its marks so far."""

    items: tuple[ReviewItem, ...]
    strata: tuple[Stratum, ...]
    crs_wkt: str  # the polygons' CRS ('' for none)

    @property
    def marked(self) -> int:
        return sum(item.relevant is not None for item in self.items)

    def with_mark(self, position: int, relevant: bool | None) -> Review:
        """This review with item `position` marked (None: unmarked again)."""
        items = list(self.items)
        items[position] = replace(items[position], relevant=relevant)
        return replace(self, items=tuple(items))

    def estimate(self) -> PrecisionEstimate:
        """The precision estimated from the marked items (unmarked ones are left out)."""
        reviewed = [0] * len(self.strata)
        relevant = [0] * len(self.strata)
        for item in self.items:
            if item.relevant is not None:
                reviewed[item.stratum - 1] += 1
                relevant[item.stratum - 1] += int(item.relevant)
        return estimate_precision(self.strata, reviewed, relevant)

    def labels(self) -> Feedback:
        """The marked items as labelled boxes (relevant: positive), in the review's order."""
        return Feedback(tuple(LabelledBox(raster=item.raster, bbox=item.bbox, crs=self.crs_wkt or None,
                                          positive=item.relevant)
                              for item in self.items if item.relevant is not None))


def sample_review(match_map, sample: Sample) -> Review:
    """The review of `sample` (drawn from match_map.polygons' score_max) in the map's CRS
    (core.map_io.map_crs: its rasters' when they share one, else WGS 84), nothing marked yet."""
    from .map_io import map_crs

    crs_wkt = map_crs(match_map)
    items = []
    for position, stratum in zip(sample.picks, sample.stratum_of):
        polygon = match_map.polygons[position]
        rings = tuple(reproject_ring(list(ring), polygon.crs_wkt, crs_wkt) for ring in polygon.rings)
        items.append(ReviewItem(polygon.map_id, polygon.raster, polygon.score_max, stratum, rings))
    return Review(tuple(items), sample.strata, crs_wkt)


def write_review(review: Review, path: str | Path, index_dir: str | Path | None = None) -> Path:
    """Write the review (marks as 'yes'/'no', unmarked empty) to .gpkg or .geojson, atomically."""
    rows = [(item.rings, _values(review, item)) for item in review.items]
    return write_polygon_file(path, index_dir, lambda name: _write_gpkg(name, rows, review.crs_wkt),
                              lambda: rings_geojson(REVIEW_LAYER, rows, review.crs_wkt))


def write_review_labels(review: Review, path: str | Path) -> tuple[Path, int, int]:
    """The marked polygons as a labels file (core.labels_io.write_labels): (path, positives, negatives)."""
    from .labels_io import write_labels

    labels = review.labels()
    if not labels.boxes:
        raise RsirError(f"{path}: no polygon is marked yet, so there are no labels to write")
    return write_labels(labels, path), len(labels.positives()), len(labels.negatives())


def _values(review: Review, item: ReviewItem) -> dict:
    stratum = review.strata[item.stratum - 1]
    mark = "" if item.relevant is None else YES if item.relevant else NO
    return {"map_id": item.map_id, "raster": item.raster, "score": round(item.score, 6),
            "stratum": item.stratum, "strata": len(review.strata), "stratum_size": stratum.size,
            "stratum_low": round(stratum.low, 6), "stratum_high": round(stratum.high, 6), "relevant": mark}


def _write_gpkg(name: str, rows: Sequence[tuple[tuple[Ring, ...], dict]], crs_wkt: str) -> None:
    from osgeo import ogr

    ogr.UseExceptions()
    source = ogr.GetDriverByName("GPKG").CreateDataSource(name)
    try:
        write_rings_layer(source, REVIEW_LAYER, ogr_srs(crs_wkt), FIELDS, rows)
    finally:
        source = None  # closing the data source flushes it to disk


def read_review(path: str | Path) -> Review:
    """The review in a .gpkg/.geojson review file; RsirError naming the file and the problem otherwise."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    path = Path(path)
    if path.suffix.lower() not in (".gpkg", ".geojson", ".json"):
        raise RsirError(f"{path}: unsupported review file format '{path.suffix}' (use .gpkg or .geojson)")
    source = open_vector_file(path, "review file")
    try:
        layer = source.GetLayerByName(REVIEW_LAYER) or (source.GetLayer(0) if source.GetLayerCount() == 1 else None)
        if layer is None:
            raise RsirError(f"{path}: no layer '{REVIEW_LAYER}'; is this a sample written by `rsir review`?")
        missing = [field for field in FIELDS if field not in field_names(layer)]
        if missing:
            raise RsirError(f"{path}: no field(s) {', '.join(missing)}; is this a sample written by `rsir review`?")
        if layer.GetFeatureCount() > MAX_FEATURES:
            raise RsirError(f"{path}: holds more than {MAX_FEATURES:,} polygons, more than a review sample of rsir")
        srs = layer.GetSpatialRef()
        if srs is not None:
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        crs_wkt = srs.ExportToWkt() if srs is not None else ""
        rows, items = [], []
        for number, feature in enumerate(layer, start=1):  # a geometry lives as long as its feature
            rows.append({field: feature.GetField(field) for field in FIELDS})
            items.append(_item(path, number, rows[-1], feature.GetGeometryRef()))
    finally:
        source = None  # closes the file
    if not items:
        raise RsirError(f"{path}: the review file holds no polygon")
    seen: set[int] = set()
    for number, item in enumerate(items, start=1):
        if item.map_id in seen:
            raise RsirError(f"{path}: feature {number}: map polygon {item.map_id} is in the sample twice")
        seen.add(item.map_id)
    return Review(tuple(items), _strata(path, rows), crs_from(crs_wkt).to_wkt()
                  if crs_wkt else "")


def _item(path: Path, number: int, values: dict, geometry) -> ReviewItem:
    def fail(problem: str) -> RsirError:
        return RsirError(f"{path}: feature {number}: {problem}")

    for field, kind in FIELDS.items():
        value = values[field]
        if field == "relevant":
            continue
        good = (isinstance(value, int) and value >= (1 if field in ("stratum", "strata", "stratum_size") else 0)
                if kind == "int" else isinstance(value, (int, float)) and math.isfinite(value) if kind == "real"
                else isinstance(value, str) and bool(value.strip()))
        if not good:
            raise fail(f"no valid '{field}'")
    if values["stratum"] > values["strata"]:
        raise fail(f"stratum {values['stratum']} of {values['strata']} strata cannot be")
    answer = (values["relevant"] or "").strip().lower()
    if answer and answer not in ANSWERS:
        raise fail(f"relevant is '{answer[:20]}': mark '{YES}' or '{NO}' (or leave it empty)")
    rings = polygon_rings(geometry)
    if isinstance(rings, str):
        raise fail(rings)
    return ReviewItem(values["map_id"], values["raster"], float(values["score"]), values["stratum"],
                      tuple(rings), ANSWERS.get(answer))


def _strata(path: Path, rows: list[dict]) -> tuple[Stratum, ...]:
    """The strata the features describe, each feature agreeing with the others of its stratum."""
    count = rows[0]["strata"]
    found: dict[int, Stratum] = {}
    members: dict[int, int] = {}
    for number, values in enumerate(rows, start=1):
        stratum = Stratum(values["stratum"], float(values["stratum_low"]), float(values["stratum_high"]),
                          values["stratum_size"])
        if values["strata"] != count or found.setdefault(stratum.number, stratum) != stratum:
            raise RsirError(f"{path}: feature {number}: its stratum figures differ from another feature's of "
                            f"stratum {stratum.number}; the file was edited beyond the field 'relevant'")
        members[stratum.number] = members.get(stratum.number, 0) + 1
    absent = [str(h) for h in range(1, count + 1) if h not in found]
    if absent:
        raise RsirError(f"{path}: no polygon of stratum {', '.join(absent)} of {count}; polygons were deleted "
                        "from the sample, which then no longer says how precise the map is")
    for number, stratum in found.items():
        if members[number] > stratum.size:
            raise RsirError(f"{path}: {members[number]} polygons of stratum {number}, which holds {stratum.size}")
    return tuple(found[h] for h in range(1, count + 1))
