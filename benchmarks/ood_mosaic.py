"""Box-query precision on imagery the models never saw: a georeferenced mosaic of UC Merced scenes.

    .venv/bin/python benchmarks/ood_mosaic.py [--data ../shared/data/ucm10] [--model M ...]
        [--box 1.0 0.5] [--rounds 2] [--queries 0] [--workdir DIR]

Every scene of --data (a folder of class folders; UC Merced: 256 px at 0.3 m, USGS orthoimagery) fills
one cell of a UTM raster, in shuffled order (seed 7). The raster is indexed with each model in tiles of
one cell, as an analyst would tile it, and every scene (or --queries of them) is queried through rsir's
own search with a square box of --box of the cell's side at the cell's centre: 1.0 is the scene, 0.5 an
object-sized box. P@10 counts the hits whose cell holds a scene of the query's class; the query's own
cell overlaps the box and is excluded by rsir, as in the plugin. Then --rounds rounds of simulated
relevance feedback: the top 10 are marked (positive when of the query's class) and the search is run
again from every label so far; P@10 counts the new hits only, since marked tiles are never returned.
Prints P@10 per model, box and round, and each model's ratio to the first model.
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

ORIGIN = (500_000.0, 4_000_000.0)  # top-left corner, EPSG:32611 (UTM 11N, California)
K = 10


@dataclass(frozen=True)
class Config:
    data: Path
    models: tuple[Path, ...]
    boxes: tuple[float, ...]
    rounds: int
    queries: int
    scene_px: int
    gsd_m: float
    workdir: Path | None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ucm10")
    parser.add_argument("--model", type=Path, nargs="*", default=None,
                        help="ONNX models to compare (default: the bundled default)")
    parser.add_argument("--box", type=float, nargs="*", default=[1.0, 0.5],
                        help="query box side as a fraction of the cell's")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of simulated feedback")
    parser.add_argument("--queries", type=int, default=0, help="query only N scenes, evenly spread (0: all)")
    parser.add_argument("--scene-px", type=int, default=256, help="cell size in pixels (scenes are resized)")
    parser.add_argument("--gsd", type=float, default=0.3, help="metres per pixel of the mosaic")
    parser.add_argument("--workdir", type=Path, default=None, help="where the mosaic and indexes go")
    return parser


def hit_class(hit, classes: dict, scene_px: int) -> str:
    """The class of the scene whose cell holds the hit's top-left pixel."""
    return cell_class(classes, *hit.window[:2], scene_px)


def precision(hits, classes: dict, scene_px: int, label: str) -> float:
    return float(np.mean([hit_class(h, classes, scene_px) == label for h in hits]))


def measure(index: Path, mosaic: Path, classes: dict, cfg: Config, box_fraction: float, params=None,
            feedback_params=None) -> list[float]:
    """Mean P@10 of the box query, then of each feedback round, over the query scenes.

    params: the box query's SearchParams (default k=K, as shipped); feedback_params: the feedback rounds'
    (default: the same)."""
    from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox, search_feedback
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box

    cell_m = cfg.scene_px * cfg.gsd_m
    side = box_fraction * cell_m
    params = params or SearchParams(k=K)
    feedback_params = feedback_params or params
    cells = sorted(classes)
    if cfg.queries:
        cells = [cells[i] for i in np.linspace(0, len(cells) - 1, cfg.queries).round().astype(int)]
    scores = []
    for col, row in cells:
        label = classes[(col, row)]
        cx, cy = ORIGIN[0] + (col + cfg.scene_px / 2) * cfg.gsd_m, ORIGIN[1] - (row + cfg.scene_px / 2) * cfg.gsd_m
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        hits = search_box(index, mosaic, box, None, params).hits
        feedback = Feedback((LabelledBox(str(mosaic), box, None, True),))
        per_round = [precision(hits, classes, cfg.scene_px, label)]
        for _ in range(cfg.rounds):
            for hit in hits:
                xs, ys = zip(*hit.polygon)
                positive = hit_class(hit, classes, cfg.scene_px) == label
                feedback = feedback.with_box(LabelledBox(str(mosaic), (min(xs), min(ys), max(xs), max(ys)),
                                                         None, positive))
            hits = search_feedback(index, feedback, feedback_params).hits
            per_round.append(precision(hits, classes, cfg.scene_px, label))
        scores.append(per_round)
    return list(np.mean(scores, axis=0))


def main(cfg: Config) -> None:
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    print(f"git {revision}; config {json.dumps(asdict(cfg), default=str)}")
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="rsir-ood-mosaic-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mosaic = workdir / "mosaic.tif"
    scenes = scene_files(cfg.data)
    if not scenes:
        raise SystemExit(f"{cfg.data}: no scene images in class folders")
    classes = write_mosaic(scenes, mosaic, cfg.scene_px, cfg.gsd_m, ORIGIN, "EPSG:32611")[0]
    names = sorted(set(classes.values()))
    print(f"mosaic of {len(classes)} scenes, {len(names)} classes, cells of {cfg.scene_px * cfg.gsd_m:.1f} m "
          f"({mosaic}); chance P@10 is about {1 / len(names):.2f}")
    cell_m = cfg.scene_px * cfg.gsd_m
    table: dict[str, dict[float, list[float]]] = {}
    for model in cfg.models:
        index = workdir / f"index-{model.stem}"
        started = time.perf_counter()
        build_index(BuildParams(index_dir=index, rasters=(mosaic,), model_path=model, force=True,
                                tiling=TilingParams(tile_m=cell_m, stride_m=cell_m)))
        print(f"{model.name}: indexed in {time.perf_counter() - started:.1f} s")
        table[model.name] = {}
        for fraction in cfg.boxes:
            rounds = measure(index, mosaic, classes, cfg, fraction)
            table[model.name][fraction] = rounds
            steps = " -> ".join(f"{p:.3f}" for p in rounds)
            print(f"{model.name}, box {fraction:g} of a cell: P@10 {steps} (box query, then {cfg.rounds} "
                  f"feedback rounds)")
    first = cfg.models[0].name
    for name in list(table)[1:]:
        for fraction in cfg.boxes:
            ratios = " / ".join(f"{a / b:.2f}" for a, b in zip(table[name][fraction], table[first][fraction]))
            print(f"ratio {name} / {first}, box {fraction:g}: {ratios}")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH

    models = tuple(args.model) if args.model else (DEFAULT_MODEL_PATH,)
    main(Config(data=args.data, models=models, boxes=tuple(args.box), rounds=args.rounds,
                queries=args.queries, scene_px=args.scene_px, gsd_m=args.gsd, workdir=args.workdir))
