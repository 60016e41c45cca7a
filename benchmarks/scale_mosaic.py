"""Box-query precision across ground scales: a two-resolution mosaic of UC Merced scenes.

    .venv/bin/python benchmarks/scale_mosaic.py [--data ../shared/data/ucm10] [--model M] [--box 1.0 0.5]
        [--factor 3] [--queries 0] [--workdir DIR]

The scenes of --data (class folders; UC Merced: 256 px at 0.3 m) are split in two halves (alternate scenes
of each class): one fills a mosaic at 0.3 m, the other a mosaic resampled --factor times coarser (cells of
256/factor px at 0.3*factor m), 20 km apart in UTM 11N. Both are indexed in one index with the model's
default tiles (its tile footprint in pixels), so the coarse mosaic's tiles cover --factor times more ground:
the situation of an analyst indexing imagery of two resolutions. Every scene of both halves (or --queries
of each, evenly spread) is queried with a square box of --box of its cell at the cell's centre, through
rsir's own search_box (re-ranking as shipped), with and without scale-aware querying, side by side. P@10
counts the hits whose centre lies in a cell of the query's class, on either mosaic; `other` is the share
of hits on the other mosaic, `s/query` the mean time of a search.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scene_mosaic import cell_class, scene_files, write_mosaic  # noqa: E402

ORIGIN = (500_000.0, 4_000_000.0)  # top-left corner of the fine mosaic, EPSG:32611 (UTM 11N)
COARSE_OFFSET_M = 20_000.0  # the coarse mosaic lies this far east: another place on the ground
K = 10


@dataclass(frozen=True)
class Config:
    data: Path
    model: Path
    boxes: tuple[float, ...]
    factor: int
    queries: int
    scene_px: int
    gsd_m: float
    workdir: Path | None


@dataclass(frozen=True)
class Mosaic:
    path: Path
    classes: dict  # (col, row) of each cell's top-left pixel -> class
    cell_px: int
    gsd_m: float
    origin: tuple[float, float]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ucm10")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled default)")
    parser.add_argument("--box", type=float, nargs="*", default=[1.0, 0.5],
                        help="query box side as a fraction of the cell's")
    parser.add_argument("--factor", type=int, default=3, help="how much coarser the second half is")
    parser.add_argument("--queries", type=int, default=0, help="query N scenes of each half (0: all)")
    parser.add_argument("--scene-px", type=int, default=256, help="fine cell size in pixels")
    parser.add_argument("--gsd", type=float, default=0.3, help="metres per pixel of the fine mosaic")
    parser.add_argument("--workdir", type=Path, default=None, help="where the mosaics and the index go")
    return parser


def hit_class(hit, mosaics: dict[str, Mosaic]) -> str:
    """The class of the cell holding the hit tile's centre, on its mosaic ("" for an empty cell of the last
    row: never the query's class)."""
    mosaic = mosaics[hit.raster]
    col, row, width, height = hit.window
    try:
        return cell_class(mosaic.classes, col + width // 2, row + height // 2, mosaic.cell_px)
    except KeyError:
        return ""


def query_box(mosaic: Mosaic, cell: tuple[int, int], fraction: float) -> tuple[float, float, float, float]:
    """A square box of `fraction` of the cell's side at the cell's centre, in the mosaic's CRS."""
    side = fraction * mosaic.cell_px * mosaic.gsd_m
    cx = mosaic.origin[0] + (cell[0] + mosaic.cell_px / 2) * mosaic.gsd_m
    cy = mosaic.origin[1] - (cell[1] + mosaic.cell_px / 2) * mosaic.gsd_m
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def measure(index: Path, query: Mosaic, mosaics: dict[str, Mosaic], cfg: Config, fraction: float,
            scale_aware: bool) -> tuple[float, float, float]:
    """(mean P@10, share of hits on the other mosaic, seconds a search) over the query mosaic's scenes."""
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box

    params = SearchParams(k=K, scale_aware=scale_aware)
    cells = sorted(query.classes)
    if cfg.queries:
        cells = [cells[i] for i in np.linspace(0, len(cells) - 1, cfg.queries).round().astype(int)]
    precision, other, seconds = [], [], []
    for cell in cells:
        started = time.perf_counter()
        hits = search_box(index, query.path, query_box(query, cell, fraction), None, params).hits
        seconds.append(time.perf_counter() - started)
        label = query.classes[cell]
        precision.append(np.mean([hit_class(hit, mosaics) == label for hit in hits]))
        other.append(np.mean([hit.raster != str(query.path) for hit in hits]))
    return float(np.mean(precision)), float(np.mean(other)), float(np.median(seconds))


def main(cfg: Config) -> None:
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams
    from rsir_qgis_plugin.core.raster import resolve_raster_path

    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    print(f"git {revision}; config {json.dumps(asdict(cfg), default=str)}")
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="rsir-scale-mosaic-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scenes = scene_files(cfg.data)
    if not scenes:
        raise SystemExit(f"{cfg.data}: no scene images in class folders")
    coarse_px = round(cfg.scene_px / cfg.factor)
    halves = {"fine": (scenes[0::2], cfg.scene_px, cfg.gsd_m, ORIGIN),
              "coarse": (scenes[1::2], coarse_px, cfg.gsd_m * cfg.factor, (ORIGIN[0] + COARSE_OFFSET_M, ORIGIN[1]))}
    mosaics: dict[str, Mosaic] = {}
    for name, (half, cell_px, gsd, origin) in halves.items():
        path = workdir / f"{name}.tif"
        classes = write_mosaic(half, path, cell_px, gsd, origin, "EPSG:32611")[0]
        mosaics[resolve_raster_path(path)] = Mosaic(Path(resolve_raster_path(path)), classes, cell_px, gsd, origin)
        print(f"{name}: {len(classes)} scenes in cells of {cell_px} px at {gsd:g} m ({cell_px * gsd:.1f} m)")
    index = workdir / "index"
    started = time.perf_counter()
    summary = build_index(BuildParams(index_dir=index, rasters=tuple(m.path for m in mosaics.values()),
                                      model_path=cfg.model, force=True))
    print(f"indexed {summary.tiles_indexed} tiles in {time.perf_counter() - started:.1f} s (model's default tiles)")
    print("query on | box | P@10 plain | P@10 scale-aware | other-mosaic hits plain / aware | s/query plain / aware")
    for query in mosaics.values():
        for fraction in cfg.boxes:
            plain = measure(index, query, mosaics, cfg, fraction, False)
            aware = measure(index, query, mosaics, cfg, fraction, True)
            print(f"{query.path.stem} | {fraction:g} | {plain[0]:.3f} | {aware[0]:.3f} | {plain[1]:.2f} / "
                  f"{aware[1]:.2f} | {plain[2]:.3f} / {aware[2]:.3f}", flush=True)


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH

    main(Config(data=args.data, model=args.model or DEFAULT_MODEL_PATH, boxes=tuple(args.box),
                factor=args.factor, queries=args.queries, scene_px=args.scene_px, gsd_m=args.gsd,
                workdir=args.workdir))
