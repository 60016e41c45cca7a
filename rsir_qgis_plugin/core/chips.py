"""Labels become training data: each labelled box of a labels file as an image chip (issue 24 part 3).

Every box is read as a query box is (query_step.box_window and read_box: the bands the raster was indexed
with, its stretch, resampled to the index model's input size), so a chip is exactly what the model sees of
that box when it searches or embeds it, and written as a georeferenced GeoTIFF: the box's pixel window on
the ground, in the raster's CRS, at the model's input size. Positives go to `positive/`, negatives to
`negative/` (a class of their own, "not the target": a metric-learning loss needs two classes, and the
boxes the analyst rejected are the look-alikes the model must learn to push away); chips.csv says which
box each chip is. The folder layout and its atomic writing are core/chips_folder.py's.

    export_chips(ChipParams(index_dir, labels, out_dir, per_class=0, seed=0), progress, is_cancelled,
                 read=None) -> ChipsSummary
        read: the labels already read (a QGIS layer through labels/convert.py); params.labels then only names
        them in chips.json (with its sha256 when it is a file).
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chips_folder import (
    CHIP_SUFFIX,
    CLASS_FOLDERS,
    CSV_NAME,
    MANIFEST_NAME,
    ChipRow,
    checked_out_dir,
    staged_folder,
    write_csv,
    write_manifest,
)
from .errors import Cancelled, RasterError, RsirError
from .examples import LabelledBox
from .feedback import checked_example
from .label_records import LabelsRead
from .labels_io import load_labels
from .model import ModelInfo
from .params import SearchParams
from .query_step import box_window, index_reader, model_for, read_box
from .raster import RasterSource
from .tiling import window_bounds

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ChipParams:
    """What to export: the index (its model sets the chip size and bands), the labels file, the folder."""

    index_dir: Path
    labels: Path  # the labels file (or, with `read` given to export_chips, what names the labels)
    out_dir: Path
    per_class: int = 0  # at most this many chips of each class, a seeded choice (0: every labelled box)
    seed: int = 0


@dataclass
class ChipsSummary:
    """What an export wrote: chips per class, the labels left out (one line each), the chip size."""

    out_dir: Path
    counts: dict[str, int]
    labelled: dict[str, int]
    chip_size: int
    model: str
    seconds: float
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        chosen = ", ".join(f"{self.counts.get(name, 0)} {name}" for name in CLASS_FOLDERS)
        capped = "" if self.counts == self.labelled else \
            " (of " + ", ".join(f"{self.labelled.get(n, 0)} {n}" for n in CLASS_FOLDERS) + " labelled)"
        return (f"{sum(self.counts.values())} chips written to {self.out_dir}: {chosen}{capped}; "
                f"{self.chip_size} px, as model '{self.model}' sees them; {self.seconds:.1f} s")


def export_chips(params: ChipParams, progress: Progress | None = None,
                 is_cancelled: Callable[[], bool] | None = None, read: LabelsRead | None = None) -> ChipsSummary:
    """Write one chip per labelled box (the latest label of each box) into params.out_dir; raises RsirError
    with one line (a bad folder, labels file or box) and Cancelled when is_cancelled() turns true (then
    nothing is written). `read`: the labels, read elsewhere (else params.labels is read)."""
    started = time.perf_counter()
    if params.per_class < 0:
        raise RsirError(f"--per-class must be 0 (every box) or more, got {params.per_class}")
    out = checked_out_dir(params.out_dir, params.index_dir)
    read = read if read is not None else load_labels(params.labels)
    boxes = read.feedback.latest().boxes
    if not any(box.positive for box in boxes):
        raise RsirError(f"{params.labels}: holds no positive box ({len(boxes)} negative); nothing to teach")
    reader = index_reader(params.index_dir)
    model = model_for(reader, SearchParams())
    labelled = {name: sum(box.label == name for box in boxes) for name in CLASS_FOLDERS}
    chosen = choose_per_class(boxes, params.per_class, params.seed)
    rows: list[ChipRow] = []
    with staged_folder(out) as stage:
        for name in CLASS_FOLDERS:
            (stage / name).mkdir()
        for done, (number, box) in enumerate(chosen):
            if is_cancelled and is_cancelled():
                raise Cancelled("chip export cancelled; nothing was written")
            rows.append(_write_chip(reader, model, box, number, stage))
            if progress:
                progress(100.0 * (done + 1) / len(chosen), f"chip {done + 1} of {len(chosen)}")
        write_csv(rows, stage / CSV_NAME)
        counts = {name: sum(row.label == name for row in rows) for name in CLASS_FOLDERS}
        write_manifest(_manifest(params, reader.index_dir, model, counts, labelled, read.skipped),
                       stage / MANIFEST_NAME)
    notes = [] if counts["negative"] else [
        "no negative boxes: training.fit needs two classes; mark some look-alikes negative and export again"]
    return ChipsSummary(out_dir=out, counts=counts, labelled=labelled, chip_size=model.contract.input_size,
                        model=model.contract.name, seconds=time.perf_counter() - started,
                        skipped=list(read.skipped), notes=notes)


def choose_per_class(boxes: tuple[LabelledBox, ...], per_class: int, seed: int) -> list[tuple[int, LabelledBox]]:
    """(number in the labels, box) of the boxes to export, in label order: every box, or at most
    `per_class` of each class drawn with a generator seeded by `seed` (the same choice every run)."""
    numbered = list(enumerate(boxes, start=1))
    if per_class <= 0:
        return numbered
    rng = np.random.default_rng(seed)
    kept: list[tuple[int, LabelledBox]] = []
    for name in CLASS_FOLDERS:
        members = [item for item in numbered if item[1].label == name]
        if len(members) > per_class:
            members = [members[i] for i in sorted(rng.choice(len(members), per_class, replace=False))]
        kept += members
    return sorted(kept, key=lambda item: item[0])


def _write_chip(reader, model: ModelInfo, box: LabelledBox, number: int, stage: Path) -> ChipRow:
    """Read one labelled box as a query box and write its chip; the row of chips.csv for it."""
    name = f"{box.label} example {number}"
    box = checked_example(box, name)
    size = model.contract.input_size
    try:
        source, window = box_window(reader, model, box.raster, box.bbox, box.crs)
        tile = read_box(source, window, size, box.bbox)
    except RasterError as exc:
        raise RasterError(exc.path, f"{exc.problem} (label {number}, {box.label})") from exc
    relative = f"{box.label}/{number:05d}{CHIP_SUFFIX}"
    write_chip_tiff(stage / relative, tile, source, window)
    xmin, ymin, xmax, ymax = window_bounds(source.transform, window)
    return ChipRow(file=relative, label=box.label, raster=source.path, xmin=xmin, ymin=ymin, xmax=xmax,
                   ymax=ymax, crs=crs_text(source.crs_wkt), col=window[0], row=window[1], width=window[2],
                   height=window[3])


def write_chip_tiff(path: Path, tile: np.ndarray, source: RasterSource, window: tuple[int, int, int, int]) -> None:
    """A (bands, S, S) uint8 chip as a GeoTIFF covering `window` of the raster on the ground (its CRS and
    the window's transform scaled to S pixels; a raster without a CRS gives a chip without one)."""
    import rasterio
    from affine import Affine

    bands, height, width = tile.shape
    col, row, w, h = window
    transform = Affine(*source.transform) * Affine.translation(col, row) * Affine.scale(w / width, h / height)
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype="uint8",
                   transform=transform, compress="deflate")
    if source.crs_wkt:
        profile["crs"] = source.crs_wkt
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(tile)


def crs_text(crs_wkt: str) -> str:
    """EPSG:n where the CRS has an authority code, else its WKT ('' for none): what chips.csv records."""
    if not crs_wkt:
        return ""
    from .geometry import crs_from

    authority = crs_from(crs_wkt).to_authority()
    return ":".join(authority) if authority else crs_wkt


def _manifest(params: ChipParams, index_dir: Path, model: ModelInfo, counts: dict, labelled: dict,
              skipped: list[str]) -> dict:
    """chips.json: where the chips came from, for the model card of a model trained on them."""
    labels = Path(params.labels)
    source = {"file": labels.name}
    if labels.is_file():
        source.update(path=os.path.abspath(labels), sha256=hashlib.sha256(labels.read_bytes()).hexdigest())
    return {"labels": source,
            "index": os.path.abspath(index_dir),
            "model": {"name": model.contract.name, "sha256": model.sha256},
            "chip_size": model.contract.input_size, "classes": list(CLASS_FOLDERS),
            "counts": counts, "labelled": labelled, "per_class": params.per_class, "seed": params.seed,
            "skipped": skipped[:100]}
