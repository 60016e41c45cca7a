"""Re-ranking through the engine, side by side: as shipped (the query alone), αQE, and DBA + αQE.

    .venv/bin/python benchmarks/rerank_quality.py [--model M.onnx] [--ucm ../shared/data/ucm10]
        [--aid ../shared/data/aid150] [--rounds 2] [--ood-queries 0] [--workdir DIR] [--skip-ood]

For each set (UC Merced: every scene, a development set; AID: the seeded test split of training/data/split.py,
seed 0, 20 %), the scenes fill the cells of one georeferenced mosaic (benchmarks/scene_mosaic.py), indexed in
tiles of one cell twice: as shipped, and with --dba from the same shards (so the DBA step is the only work the
second build does: its time against the first build's embedding time is DBA's cost). Every scene queries the
index through rsir's search_box with a box of its whole cell and k = all other scenes (its own cell overlaps
the box and is excluded, as in the plugin; NMS off: cells do not overlap): mAP and P@10 by class, and the
query time. Then the OOD mosaic protocol of benchmarks/ood_mosaic.py on the UC Merced mosaic: P@10 of
whole- and half-cell boxes and after --rounds rounds of simulated feedback (feedback is never re-ranked; its
labels come from the configuration's box query). Prints one table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ood_mosaic import ORIGIN, Config, measure  # noqa: E402
from benchmarks.scene_mosaic import cell_class, scene_files, write_mosaic  # noqa: E402

CONFIGS = (("as shipped", "plain", False), ("αQE", "plain", True), ("DBA + αQE", "dba", True))


@dataclass(frozen=True)
class Set:
    name: str
    scenes: tuple[Path, ...]
    cell_px: int
    gsd_m: float


@dataclass(frozen=True)
class RunConfig:
    model: Path
    ucm: Path
    aid: Path
    rounds: int
    ood_queries: int
    workdir: Path | None
    skip_ood: bool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled default)")
    parser.add_argument("--ucm", type=Path, default=ROOT.parent / "shared" / "data" / "ucm10")
    parser.add_argument("--aid", type=Path, default=ROOT.parent / "shared" / "data" / "aid150")
    parser.add_argument("--rounds", type=int, default=2, help="feedback rounds on the OOD mosaic")
    parser.add_argument("--ood-queries", type=int, default=0, help="OOD mosaic: query N scenes (0: all)")
    parser.add_argument("--workdir", type=Path, default=None, help="where mosaics and indexes go")
    parser.add_argument("--skip-ood", action="store_true", help="leave out the OOD mosaic feedback rounds")
    return parser


def average_precision(relevant: np.ndarray) -> float:
    """AP of one ranked list of relevance flags (every relevant item is in the list)."""
    if not relevant.any():
        return 0.0
    hits = np.cumsum(relevant)
    return float((hits / np.arange(1, len(relevant) + 1))[relevant].mean())


def aid_test_scenes(root: Path) -> tuple[Path, ...]:
    """The AID test split the bundled model was evaluated on (training/data/split.py, seed 0, 20 %)."""
    from training.data.folder import scan_folder
    from training.data.split import stratified_split

    split = stratified_split(scan_folder(root), 0.2, 0)
    return tuple(root / path for path, _ in split.test)


def build_pair(scene_set: Set, model: Path, workdir: Path) -> dict:
    """The set's mosaic and its two indexes (plain, then DBA from the plain one's shards), with timings."""
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    mosaic = workdir / f"{scene_set.name}-mosaic.tif"
    classes, transform = write_mosaic(list(scene_set.scenes), mosaic, scene_set.cell_px, scene_set.gsd_m, ORIGIN,
                                      "EPSG:32611")
    cell_m = scene_set.cell_px * scene_set.gsd_m
    tiling = TilingParams(tile_m=cell_m, stride_m=cell_m)
    plain, dba = workdir / f"{scene_set.name}-plain", workdir / f"{scene_set.name}-dba"
    for index in (plain, dba):
        shutil.rmtree(index, ignore_errors=True)
    built = build_index(BuildParams(index_dir=plain, rasters=(mosaic,), model_path=model, tiling=tiling))
    shutil.copytree(plain / "shards", dba / "shards")
    augmented = build_index(BuildParams(index_dir=dba, rasters=(mosaic,), model_path=model, tiling=tiling, dba=True))
    assert augmented.tiles_indexed == 0, "the DBA build re-embedded tiles"
    print(f"{scene_set.name}: {built.tiles_total} scenes; embedding {built.embed_seconds:.1f} s "
          f"({built.tiles_per_second:.1f} tiles/s); DBA {augmented.dba_seconds:.2f} s "
          f"({100 * augmented.dba_seconds / built.embed_seconds:.1f} % of the embedding)", flush=True)
    return {"mosaic": mosaic, "classes": classes, "transform": transform, "plain": plain, "dba": dba,
            "embed_s": built.embed_seconds, "dba_s": augmented.dba_seconds, "tiles": built.tiles_total}


def retrieval(scene_set: Set, built: dict, index: Path, rerank: bool) -> dict:
    """mAP, P@10 and query times of every scene querying the index through search_box."""
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box

    classes, transform, cell = built["classes"], built["transform"], scene_set.cell_px
    indexed = built["tiles"]
    params = SearchParams(k=indexed - 1, nms_iou=1.0, rerank=rerank)
    aps, p10, seconds = [], [], []
    for (col, row), label in sorted(classes.items()):
        left, top = transform * (col, row)
        right, bottom = transform * (col + cell, row + cell)
        started = time.perf_counter()
        hits = search_box(index, built["mosaic"], (left, bottom, right, top), None, params).hits
        seconds.append(time.perf_counter() - started)
        relevant = np.array([cell_class(classes, *h.window[:2], cell) == label for h in hits])
        aps.append(average_precision(relevant))
        p10.append(relevant[:10].mean())
    return {"map": float(np.mean(aps)), "p10": float(np.mean(p10)), "p50_ms": 1000 * statistics.median(seconds),
            "p95_ms": 1000 * float(np.percentile(seconds, 95))}


def ood_rounds(ucm: Set, built: dict, index: Path, rerank: bool, cfg: RunConfig) -> dict[float, list[float]]:
    """benchmarks/ood_mosaic.py's P@10 for whole- and half-cell boxes, then each feedback round."""
    from rsir_qgis_plugin.core.params import SearchParams

    ood = Config(data=cfg.ucm, models=(cfg.model,), boxes=(1.0, 0.5), rounds=cfg.rounds, queries=cfg.ood_queries,
                 scene_px=ucm.cell_px, gsd_m=ucm.gsd_m, workdir=None)
    box, feedback = SearchParams(k=10, rerank=rerank), SearchParams(k=10)
    return {fraction: measure(index, built["mosaic"], built["classes"], ood, fraction, box, feedback)
            for fraction in ood.boxes}


def main(cfg: RunConfig) -> None:
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    sha = hashlib.sha256(cfg.model.read_bytes()).hexdigest()
    print(f"git {revision}; config {json.dumps(asdict(cfg), default=str)}; model sha256 {sha}", flush=True)
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="rsir-rerank-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sets = [Set("ucm", tuple(scene_files(cfg.ucm)), 256, 0.3), Set("aid-test", aid_test_scenes(cfg.aid), 150, 1.0)]
    table: dict[str, dict] = {name: {} for name, _, _ in CONFIGS}
    costs = {}
    for scene_set in sets:
        built = build_pair(scene_set, cfg.model, workdir)
        costs[scene_set.name] = built
        for name, which, rerank in CONFIGS:
            table[name][scene_set.name] = retrieval(scene_set, built, built[which], rerank)
            print(f"{scene_set.name} {name}: {json.dumps(table[name][scene_set.name])}", flush=True)
        if scene_set.name == "ucm" and not cfg.skip_ood:
            for name, which, rerank in CONFIGS:
                table[name]["ood"] = ood_rounds(scene_set, built, built[which], rerank, cfg)
                print(f"OOD mosaic {name}: {json.dumps(table[name]['ood'])}", flush=True)
    print_table(table, costs, cfg)


def print_table(table: dict, costs: dict, cfg: RunConfig) -> None:
    rounds = " → ".join(["box"] + [f"fb{i + 1}" for i in range(cfg.rounds)])
    print("\n| configuration | AID test mAP | AID test P@10 | UC Merced mAP (dev) | UC Merced P@10 (dev) | "
          f"OOD P@10 whole ({rounds}) | OOD P@10 half ({rounds}) | query p50/p95 ms (AID) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by_set in table.items():
        aid, ucm = by_set["aid-test"], by_set["ucm"]
        ood = by_set.get("ood", {})
        whole = " → ".join(f"{p:.3f}" for p in ood.get(1.0, [])) or "-"
        half = " → ".join(f"{p:.3f}" for p in ood.get(0.5, [])) or "-"
        print(f"| {name} | {aid['map']:.3f} | {aid['p10']:.3f} | {ucm['map']:.3f} | {ucm['p10']:.3f} | {whole} | "
              f"{half} | {aid['p50_ms']:.0f} / {aid['p95_ms']:.0f} |")
    for name, built in costs.items():
        print(f"DBA cost, {name} ({built['tiles']} tiles): {built['dba_s']:.2f} s against {built['embed_s']:.1f} s "
              f"of embedding ({100 * built['dba_s'] / built['embed_s']:.1f} %)")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH

    main(RunConfig(model=args.model or DEFAULT_MODEL_PATH, ucm=args.ucm, aid=args.aid, rounds=args.rounds,
                   ood_queries=args.ood_queries, workdir=args.workdir, skip_ood=args.skip_ood))
