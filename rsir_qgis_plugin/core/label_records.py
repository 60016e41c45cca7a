"""The one reading of a labels layer: records (a feature's polygon, `raster` and `label` fields) to the
engine's labelled boxes, with the rules for what is left out. Also the layout's words.

Two adapters feed it: core/labels_io.py turns OGR features of a file into LabelRecords (the command line),
labels/convert.py turns QGIS features of the `rsir labels` layer into them (the plugin's Refine). Neither
decides anything about a label: so a file reads the same from `rsir search --labels` and from QGIS.

The rules, in order (the first that fails names the feature in `skipped`):
  - the label is 'positive' or 'negative' (any case, blanks around ignored);
  - there is a polygon, and its coordinates are finite;
  - its box has an area (in the layer's CRS);
  - the raster: a relative path starts at `base_dir` (the labels file's folder); an empty one is the
    raster under the box among the rasters the reader knows (`raster_under`: the plugin's project
    layers; the command line knows none, so there it is left out). This was the plugin's rule: the
    labels layer is made to be edited in QGIS, where a box digitized by hand has no path typed in, and
    the raster under it is the rule a drawn query box follows. A raster named by the record must be a
    local file (core.untrusted_paths), so a labels file someone sent cannot make GDAL reach the network;
  - the box is placed in its raster's CRS (`raster_crs`: the CLI reads it from the raster's file, the
    plugin takes the project layer's), so a marked hit comes back as exactly its tile; a ring PROJ
    cannot place there is left out (a wrong layer CRS); without a raster CRS the box stays in the
    layer's CRS, and the search reports what is wrong with the raster;
  - the placed box has an area.

No numpy or rasterio at import: the plugin imports the words when QGIS loads it.
"""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from .untrusted_paths import local_raster_reason, network_reason

if TYPE_CHECKING:
    import numpy as np

    from .examples import Feedback, LabelledBox
    from .geometry import Ring

LABELS_LAYER = "rsir_labels"  # the layer's name in a GeoPackage
RASTER_FIELD, LABEL_FIELD = "raster", "label"
POSITIVE, NEGATIVE = "positive", "negative"
NO_RASTER_UNDER = "no raster given and none of the project's rasters under it"

Bbox = tuple[float, float, float, float]
Placed = Union[tuple[Bbox, Optional[str]], str]  # (bbox, its CRS), or why the ring cannot be placed


def label_text(positive: bool) -> str:
    return POSITIVE if positive else NEGATIVE


def parse_label(text: str) -> bool | None:
    """'positive' -> True, 'negative' -> False (any case, surrounding blanks ignored); else None."""
    return {POSITIVE: True, NEGATIVE: False}.get(text.strip().lower())


@dataclass(frozen=True)
class LabelRecord:
    """One feature of a labels layer as an adapter read it: no decision taken yet."""

    fid: int
    raster: str  # the raster field as text ('' for none or NULL)
    label: str  # the label field as text
    ring: Ring | None  # the polygon's exterior points in the layer's CRS; None: no polygon


@dataclass(frozen=True)
class LabelsRead:
    """What a labels layer gave: the engine's Feedback, and one line for each feature left out."""

    feedback: Feedback
    skipped: list[str] = field(default_factory=list)

    @property
    def positives(self) -> int:
        return sum(1 for box in self.feedback.boxes if box.positive)

    @property
    def negatives(self) -> int:
        return sum(1 for box in self.feedback.boxes if not box.positive)


def raster_reason(raster: str) -> str | None:
    """Why a raster named by a labels record is refused (it would reach the network), or None."""
    return network_reason(raster) or local_raster_reason(os.path.expanduser(raster))


@dataclass(frozen=True)
class _Row:
    """A record that passed every rule but the placing."""

    order: int
    fid: int
    raster: str
    ring: Ring
    positive: bool


def labelled_boxes(records: Iterable[LabelRecord], layer_crs: str,
                   raster_crs: Callable[[str], str | None], base_dir: str | Path | None = None,
                   raster_under: Callable[[Ring], str | None] | None = None) -> LabelsRead:
    """The records as the engine's Feedback, in their order, and a line for each one left out (rules:
    the module's docstring).

    layer_crs: the rings' CRS (EPSG:n or WKT; '' for none). raster_crs(path): the CRS its boxes go to
    ('' or None: keep the layer's). Linear in the records: each raster is checked once, and the rings of
    each raster CRS are reprojected in one PROJ call.
    """
    from .examples import Feedback

    rows: list[_Row] = []
    skipped: list[tuple[int, str]] = []
    refused: dict[str, str | None] = {}  # a raster's file read once, however many labels name it
    for order, record in enumerate(records):
        fid = record.fid

        def skip(reason: str, fid: int = fid, order: int = order) -> None:
            skipped.append((order, f"feature {fid}: {reason}"))

        positive = parse_label(record.label)
        if positive is None:
            skip(f"label '{record.label.strip()[:40]}' is neither '{POSITIVE}' nor '{NEGATIVE}'")
            continue
        ring = record.ring
        if not ring:
            skip("no polygon geometry")
            continue
        if not all(map(math.isfinite, itertools.chain.from_iterable(ring))):
            skip("its polygon has a coordinate that is not a finite number")
            continue
        if not _has_area(_bounds(ring)):
            skip("its box has no area")
            continue
        raster = record.raster.strip()
        if not raster:
            raster = (raster_under(ring) if raster_under is not None else None) or ""
            if not raster:
                skip(NO_RASTER_UNDER if raster_under is not None else "no raster given")
                continue
        else:
            if network_reason(raster) is None and base_dir is not None \
                    and not os.path.isabs(os.path.expanduser(raster)):
                raster = os.path.normpath(os.path.join(str(base_dir), raster))  # moved with its rasters
            if raster not in refused:
                refused[raster] = raster_reason(raster)  # before any GDAL call sees the path
            if refused[raster]:
                skip(f"raster {raster[:160]!r} {refused[raster]}; a labels file may name local raster files "
                     "only")
                continue
        rows.append(_Row(order, fid, raster, ring, positive))
    boxes = []
    for row, place in zip(rows, _placed(rows, layer_crs, raster_crs)):
        if isinstance(place, str):
            skipped.append((row.order, f"feature {row.fid}: {place}"))
        elif not _has_area(place[0]):
            skipped.append((row.order, f"feature {row.fid}: its box has no area"))
        else:
            boxes.append(_box(row, *place))
    return LabelsRead(Feedback(tuple(boxes)), [line for _, line in sorted(skipped, key=lambda s: s[0])])


def _box(row: _Row, bbox: Bbox, crs: str | None) -> LabelledBox:
    from .examples import LabelledBox

    return LabelledBox(raster=row.raster, bbox=bbox, crs=crs, positive=row.positive)


def _placed(rows: list[_Row], layer_crs: str, raster_crs: Callable[[str], str | None]) -> list[Placed]:
    """Each row's box in its raster's CRS where both CRSs are known, else as given in the layer's CRS."""
    places: list[Placed | None] = [None] * len(rows)
    by_crs: dict[str, list[int]] = {}  # raster CRS -> the rows to reproject to it, in one call
    known: dict[str, str | None] = {}
    for i, row in enumerate(rows):
        if row.raster not in known:
            known[row.raster] = raster_crs(row.raster)
        target = known[row.raster]
        if layer_crs and target:
            by_crs.setdefault(target, []).append(i)
        else:  # a raster without a CRS, or one that cannot be opened (the search names what is wrong)
            places[i] = (_bounds(row.ring), layer_crs or None)
    for target, numbers in by_crs.items():
        for i, place in zip(numbers, _reprojected([rows[i].ring for i in numbers], layer_crs, target)):
            places[i] = place
    return places  # type: ignore[return-value]  # every row is placed by one branch or the other


def _reprojected(rings: list[Ring], src: str, dst: str) -> list[Placed]:
    """(bbox, dst) of each ring reprojected from `src` to `dst` (densified as geometry.reproject_ring does
    it, with numpy, and one PROJ call for all), or the reason a ring cannot be placed there."""
    import numpy as np
    from rasterio.warp import transform

    from .geometry import crs_from, crs_name, reaches_lonlat

    if crs_from(src) == crs_from(dst) or not (reaches_lonlat(src) and reaches_lonlat(dst)):
        return [(_bounds(ring), dst) for ring in rings]  # the same CRS, or a local one linked to no other
    source, target = crs_from(src), crs_from(dst)
    dense = _densified(rings)

    def unplaced(detail: str = "") -> str:
        return f"its polygon does not reproject to its raster's CRS ({crs_name(dst)}){detail}; is the " \
               "layer's CRS right?"

    def place(xs: np.ndarray, ys: np.ndarray) -> Placed:
        bbox = (float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys)))
        return (bbox, dst) if all(map(math.isfinite, bbox)) else unplaced()

    try:
        xs, ys = transform(source, target, np.concatenate(dense)[:, 0], np.concatenate(dense)[:, 1])
    except Exception:  # noqa: BLE001 - rasterio fails the whole call for one point PROJ refuses: then ring by ring
        results: list[Placed] = []
        for points in dense:
            try:
                results.append(place(*map(np.asarray, transform(source, target, points[:, 0], points[:, 1]))))
            except Exception as exc:  # noqa: BLE001 - CPLE_AppDefinedError: "PROJ: utm: Invalid latitude" and the like
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
    import numpy as np

    out: list = [None] * len(rings)
    by_length: dict[int, list[int]] = {}
    for i, ring in enumerate(rings):
        by_length.setdefault(len(ring), []).append(i)
    steps = np.arange(points_per_edge) / points_per_edge
    for _length, numbers in by_length.items():
        start = np.asarray([rings[i] for i in numbers], dtype=np.float64)  # (m, length, 2)
        end = np.roll(start, -1, axis=1)
        points = start[:, :, None, :] + (end - start)[:, :, None, :] * steps[None, None, :, None]
        for i, ring_points in zip(numbers, points.reshape(len(numbers), -1, 2)):
            out[i] = ring_points
    return out


def _bounds(ring: Ring) -> Bbox:
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _has_area(bbox: Bbox) -> bool:
    return bbox[0] < bbox[2] and bbox[1] < bbox[3]
