"""Latency of a relevance-feedback search at 10^5 tiles (issue 9: under 300 ms on 2 cores).

    .venv/bin/python benchmarks/feedback_latency.py [--tiles 100000] [--queries 50] [--workdir DIR]

Writes a --tiles index through rsir's store (benchmarks/synthetic_index.py: real embeddings of the
sample raster by the bundled model, with noise, on a grid of virtual rasters), then times
search_feedback (k=20) with 3 positive and 3 negative examples (the classifier) and with 3 positives
only (Rocchio). The examples are indexed tiles, as marking hits gives them, so their stored vectors
are used; the reader is warm (opened once, as in a QGIS session). Prints p50/p95 per case.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_index import ROOT, real_embeddings, write_synthetic_index


@dataclass(frozen=True)
class Config:
    tiles: int
    queries: int
    k: int
    workdir: Path | None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50, help="timed searches per case (after 3 warm-ups)")
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the index goes (default: a temp dir)")
    return parser


def examples(reader, rng: np.random.Generator):
    """3 positives (a random tile and two of its nearest) and 3 negatives (tiles far down its list)."""
    from rsir_qgis_plugin.core.feedback import LabelledBox

    seed = int(rng.integers(reader.size))
    _, ids = reader.search(reader.vectors([seed])[0], 400)
    positive_ids = [seed, int(ids[5]), int(ids[11])]
    negative_ids = [int(i) for i in ids[[150, 250, 399]]]
    boxes = []
    for tile_ids, positive in ((positive_ids, True), (negative_ids, False)):
        for tile in reader.tiles(tile_ids):
            boxes.append(LabelledBox(raster=tile.raster.path, bbox=tuple(tile.bounds), crs=None,
                                     positive=positive))
    return boxes


def time_case(index: Path, cases: list, params) -> tuple[list[float], list]:
    from rsir_qgis_plugin.core.feedback import search_feedback

    for feedback in cases[:3]:
        search_feedback(index, feedback, params)  # warm-up: model identity, catalog pages, FAISS
    latencies, results = [], []
    for feedback in cases:
        started = time.perf_counter()
        result = search_feedback(index, feedback, params)
        latencies.append(time.perf_counter() - started)
        results.append(result)
    return latencies, results


def main(cfg: Config) -> None:
    from rsir_qgis_plugin.core.feedback import Feedback
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.store import shared_reader

    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    print(f"git {revision}; config {json.dumps(asdict(cfg), default=str)}")
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="rsir-feedback-"))
    index = workdir / f"index-{cfg.tiles}"
    if not (index / "manifest.json").is_file():
        started = time.perf_counter()
        base = real_embeddings(workdir)
        write_synthetic_index(index, cfg.tiles, base)
        print(f"index of {cfg.tiles} tiles written in {time.perf_counter() - started:.1f} s ({index})")
    reader = shared_reader(index)
    print(f"{reader.size} tiles, {reader.manifest['index_kind']} search, {reader.dim}-d")
    rng = np.random.default_rng(0)
    sets = [examples(reader, rng) for _ in range(cfg.queries)]
    params = SearchParams(k=cfg.k)
    for name, pick in (("3 positive + 3 negative (classifier)", lambda boxes: boxes),
                       ("3 positive (Rocchio)", lambda boxes: boxes[:3])):
        latencies, results = time_case(index, [Feedback(tuple(pick(boxes))) for boxes in sets], params)
        assert all(len(r.hits) == cfg.k and r.provider.startswith("stored vectors") for r in results)
        ms = 1000 * np.asarray(latencies)
        print(f"{name}: p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, "
              f"max {ms.max():.1f} ms over {len(ms)} searches (scoring: {results[0].scoring})")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    main(Config(tiles=args.tiles, queries=args.queries, k=args.k, workdir=args.workdir))
