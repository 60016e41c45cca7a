"""Search through time on real imagery (issue 23 item 6): the NAIP pair of 2009 and 2020 against the places
labelled by eye in tests/data/naip_change_labels.gpkg (12 changed, 12 unchanged; how they were chosen is in
tests/data/make_naip_change_labels.py).

    .venv/bin/python benchmarks/change_naip.py [--rasters ../shared/data/rasters] [--workdir DIR]
                                               [--tile-px 64] [--stride-px 32] [--sheets DIR]

Indexes the 2009 raster (the places: its tiles), then prints
- the hot spots' precision at 10 against the labels: a hot spot that overlaps a changed label counts as
  right, one that overlaps an unchanged label as wrong, one that overlaps no label as '?' (P@10 is given
  over the judged ones, and with '?' counted wrong as a lower bound; --sheets writes before/after images
  of the hot spots to judge the '?' by eye);
- the AUC of the change score of the labelled places (each label's place is the tile holding the largest
  part of its box); both for hot spots scored "change" (1 - cosine) and "unusual" (ChangeParams.hotspots);
- the P@5 of search by change for 3 examples (labels C3 grass to bare soil, C7 grass to water, C8 crop to
  bare soil), judged the same way by the kind of change of the labels the hits overlap.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LABELS = ROOT / "tests" / "data" / "naip_change_labels.gpkg"
BEFORE, AFTER = "naip_m_4709963_se_14_1_20090818.tif", "naip_m_4709963_se_14_1_20200831.tif"
EXAMPLES = ("C3", "C7", "C8")
# Kinds of change that count as the same as an example's (what an analyst searching by it wants).
SAME_KIND = {"bare soil": ("bare soil",), "water": ("water",)}


@dataclass(frozen=True)
class Config:
    rasters: Path
    workdir: Path | None
    tile_px: int
    stride_px: int
    sheets: Path | None


@dataclass(frozen=True)
class Label:
    name: str
    changed: bool
    kind: str
    box: tuple[float, float, float, float]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rasters", type=Path, default=ROOT.parent / "shared" / "data" / "rasters")
    parser.add_argument("--workdir", type=Path, help="where the index goes (default: a temp dir)")
    parser.add_argument("--tile-px", type=int, default=64)
    parser.add_argument("--stride-px", type=int, default=32)
    parser.add_argument("--sheets", type=Path, help="write before/after images of the hot spots and hits here")
    return parser


def read_labels(path: Path = LABELS) -> list[Label]:
    from osgeo import ogr

    ogr.UseExceptions()
    source = ogr.Open(str(path))
    labels = []
    for feature in source.GetLayer(0):
        xmin, xmax, ymin, ymax = feature.GetGeometryRef().GetEnvelope()
        labels.append(Label(feature.GetField("name"), feature.GetField("label") == "changed",
                            feature.GetField("kind"), (xmin, ymin, xmax, ymax)))
    return labels


def overlap(a, b) -> float:
    """Area shared by two (xmin, ymin, xmax, ymax) boxes."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def box_of(hit) -> tuple[float, float, float, float]:
    xs, ys = zip(*hit.hit.polygon)
    return min(xs), min(ys), max(xs), max(ys)


def judged(hit, labels: list[Label]) -> Label | None:
    """The label a hit overlaps most (at least a quarter of the label's box), or None."""
    box = box_of(hit)
    shares = [(overlap(box, lab.box) / overlap(lab.box, lab.box), lab) for lab in labels]
    share, label = max(shares, key=lambda pair: pair[0])
    return label if share >= 0.25 else None


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    wins = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(wins / (len(positive) * len(negative)))


def precision(hits, labels: list[Label], right) -> tuple[str, float, float]:
    """'+-?' marks of the hits, precision over the judged hits, and with '?' counted wrong."""
    marks = []
    for hit in hits:
        label = judged(hit, labels)
        marks.append("?" if label is None else "+" if right(label) else "-")
    judged_marks = [m for m in marks if m != "?"]
    over_judged = sum(m == "+" for m in judged_marks) / len(judged_marks) if judged_marks else float("nan")
    return "".join(marks), over_judged, sum(m == "+" for m in marks) / max(1, len(marks))


def write_sheet(path: Path, hits, before: Path, after: Path) -> None:
    """Before | after images of each hit's place (bands 1-3, 1-99 % stretch), one row a hit."""
    import rasterio
    from PIL import Image, ImageDraw
    from rasterio.windows import from_bounds

    rows = []
    with rasterio.open(before) as b, rasterio.open(after) as a:
        for hit in hits:
            box = box_of(hit)
            pair = []
            for dataset in (b, a):
                pixels = dataset.read([1, 2, 3], window=from_bounds(*box, dataset.transform),
                                      out_shape=(3, 192, 192)).astype(float)
                low, high = np.percentile(pixels, 1), np.percentile(pixels, 99)
                pixels = np.clip((pixels - low) / max(high - low, 1) * 255, 0, 255).astype(np.uint8)
                pair.append(Image.fromarray(pixels.transpose(1, 2, 0)))
            row = Image.new("RGB", (392, 208))
            row.paste(pair[0], (0, 16))
            row.paste(pair[1], (200, 16))
            ImageDraw.Draw(row).text((4, 2), f"#{hit.rank} {hit.score:.3f} {tuple(round(v) for v in box)}",
                                     fill=(255, 255, 0))
            rows.append(row)
    sheet = Image.new("RGB", (392 * 2, 208 * ((len(rows) + 1) // 2)))
    for i, row in enumerate(rows):
        sheet.paste(row, (392 * (i % 2), 208 * (i // 2)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(cfg: Config) -> None:
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.change_params import ChangeParams
    from rsir_qgis_plugin.core.change_rank import change_hotspots, search_change
    from rsir_qgis_plugin.core.examples import LabelledBox
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    before, after = cfg.rasters / BEFORE, cfg.rasters / AFTER
    work = cfg.workdir or Path(tempfile.mkdtemp(prefix="rsir-change-"))
    index = work / f"naip-{cfg.tile_px}-{cfg.stride_px}"
    summary = build_index(BuildParams(index_dir=index, rasters=(before,),
                                      tiling=TilingParams(tile_px=cfg.tile_px, stride_px=cfg.stride_px)))
    print(f"index {index}: {summary.tiles_total} places of {cfg.tile_px} px ({cfg.tile_px * 5} m), stride "
          f"{cfg.stride_px} px, bundled model")
    labels = read_labels()

    for scoring in ("change", "unusual"):
        hot = change_hotspots(index, [before], [after], ChangeParams(k=10, hotspots=scoring))
        print(f"pair: {hot.pairs[0].describe()}")
        marks, over_judged, lower = precision(hot.hits, labels, lambda label: label.changed)
        print(f"hot spots ({scoring}) P@10: {over_judged:.2f} over the judged ({marks}), {lower:.2f} with '?' wrong")
        for hit in hot.hits:
            label = judged(hit, labels)
            print(f"  #{hit.rank} {hit.score:.3f} {tuple(round(v) for v in box_of(hit))} "
                  f"{label.name + ' ' + label.kind if label else '?'}")
        if cfg.sheets:
            write_sheet(cfg.sheets / f"hotspots-{scoring}.png", hot.hits, before, after)
        every = change_hotspots(index, [before], [after], ChangeParams(k=100_000, nms_iou=1.0, hotspots=scoring))
        places = [(box_of(hit), hit.score) for hit in every.hits]
        scores = {lab.name: max(places, key=lambda place, lab=lab: overlap(place[0], lab.box))[1] for lab in labels}
        changed = np.array([scores[lab.name] for lab in labels if lab.changed])
        unchanged = np.array([scores[lab.name] for lab in labels if not lab.changed])
        print(f"AUC of the {scoring} score, {len(changed)} changed vs {len(unchanged)} unchanged labels: "
              f"{auc(changed, unchanged):.3f} (changed median {np.median(changed):.3f}, unchanged median "
              f"{np.median(unchanged):.3f})")

    by_name = {lab.name: lab for lab in labels}
    for name in EXAMPLES:
        example = by_name[name]
        kind = next(k for k in SAME_KIND if k in example.kind)
        found = search_change(index, [before], [after], [LabelledBox(str(before), example.box, None, True)],
                              ChangeParams(k=5, other_pairs=False))
        marks, over_judged, lower = precision(found.hits, labels,
                                              lambda label, kind=kind: label.changed and kind in label.kind)
        print(f"search by change {name} ({example.kind}): P@5 {over_judged:.2f} over the judged ({marks}), "
              f"{lower:.2f} with '?' wrong")
        for hit in found.hits:
            label = judged(hit, labels)
            print(f"  #{hit.rank} {hit.score:.3f} {tuple(round(v) for v in box_of(hit))} "
                  f"{label.name + ' ' + label.kind if label else '?'}")
        if cfg.sheets:
            write_sheet(cfg.sheets / f"search-{name}.png", found.hits, before, after)
    if cfg.sheets:
        print(f"before/after images in {cfg.sheets}")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    main(Config(rasters=args.rasters, workdir=args.workdir, tile_px=args.tile_px, stride_px=args.stride_px,
                sheets=args.sheets))
