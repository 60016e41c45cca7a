"""Index-build throughput against the model's own ceiling, and FAISS search latency.

    python benchmarks/index_throughput.py [--raster R] [--model M.onnx] [--device auto|cpu|cuda]
                                          [--faiss-sizes 100000 1000000]

Prints (1) model-only throughput: the onnxruntime session alone on ready float input, batch after
batch; (2) end-to-end throughput of `build_index` on the same raster (reading, resampling,
nodata checks and inference, overlapped); their ratio (target >= 0.9 on CPU, >= 0.8 on GPU);
(3) FAISS query latency for exact (flat) and approximate (IVF, nprobe 32) indexes of random unit vectors.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rsir_qgis_plugin.core.builder import build_index  # noqa: E402
from rsir_qgis_plugin.core.embedder import Embedder  # noqa: E402
from rsir_qgis_plugin.core.model import read_model  # noqa: E402
from rsir_qgis_plugin.core.params import BuildParams, TilingParams  # noqa: E402
from rsir_qgis_plugin.core.store import IVF_NPROBE, make_faiss_index  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raster", type=Path, default=ROOT / "samples" / "oam_river_bridge.tif")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stride", type=int, default=None, help="tile stride in pixels (default half a tile)")
    parser.add_argument("--repeat", type=int, default=4, help="copies of the raster to index (more tiles)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both measurements")
    parser.add_argument("--faiss-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=50)
    return parser


def model_only(embedder: Embedder, batch_size: int, seconds: float = 10.0) -> float:
    """Images per second of session.run alone on a ready, preprocessed batch."""
    size, bands = embedder.input_size, len(embedder.model.contract.mean)
    batch = embedder.preprocess(np.random.default_rng(0).integers(0, 255, (batch_size, bands, size, size),
                                                                   dtype=np.uint8))
    embedder.run_session(batch)  # warm-up: first run allocates
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        embedder.run_session(batch)
        done += batch_size
    return done / (time.perf_counter() - started)


def end_to_end(args, model_path: Path | None) -> tuple[float, int]:
    workdir = Path(tempfile.mkdtemp(prefix="rsir-bench-"))
    try:
        rasters = []
        for i in range(args.repeat):  # distinct files, so each one is read and embedded
            copy = workdir / f"raster{i}{args.raster.suffix}"
            shutil.copy(args.raster, copy)
            rasters.append(copy)
        params = BuildParams(index_dir=workdir / "index", rasters=tuple(rasters), model_path=model_path,
                             tiling=TilingParams(stride_px=args.stride), device=args.device,
                             batch_size=args.batch_size)
        summary = build_index(params)
        return summary.tiles_per_second, summary.tiles_indexed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def faiss_latency(sizes: list[int], dim: int, queries: int) -> list[tuple[str, int, float, float]]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        probe = vectors[rng.choice(n, queries, replace=False)] + 0.05 * rng.standard_normal((queries, dim),
                                                                                          dtype=np.float32)
        for kind in ("flat", "ivf"):
            started = time.perf_counter()
            index = make_faiss_index(vectors, kind)
            build_s = time.perf_counter() - started
            if kind == "ivf":
                index.nprobe = IVF_NPROBE
            index.search(probe[:1], 100)
            started = time.perf_counter()
            for q in probe:  # one query at a time, as a user asks them
                index.search(q[None], 100)
            rows.append((kind, n, (time.perf_counter() - started) / queries * 1000, build_s))
            del index
    return rows


def main(args) -> int:
    model = read_model(args.model)
    embedder = Embedder(model, args.device)
    print(f"machine: {os.cpu_count()} cores; model {model.contract.name} ({model.contract.input_size} px, "
          f"{model.contract.embedding_dim}-d); inference on {embedder.describe()}; batch {args.batch_size}")
    # Rounds alternate the two measurements so that a shared machine's slow spells hit both alike.
    ceilings, e2es = [], []
    for round_ in range(1, args.rounds + 1):
        ceilings.append(model_only(embedder, args.batch_size))
        e2e, tiles = end_to_end(args, args.model)
        e2es.append(e2e)
        print(f"round {round_}: model-only {ceilings[-1]:7.1f} img/s, end-to-end {e2e:7.1f} tiles/s "
              f"({tiles} tiles of {args.raster.name} x{args.repeat}), ratio {e2e / ceilings[-1]:.3f}")
    ceiling, e2e = float(np.median(ceilings)), float(np.median(e2es))
    print(f"model-only (onnxruntime session alone, median): {ceiling:8.1f} img/s")
    print(f"end-to-end build_index (median):                {e2e:8.1f} tiles/s")
    print(f"ratio end-to-end / model-only: {e2e / ceiling:.3f} (target >= 0.9 on CPU, >= 0.8 on GPU)")
    if args.faiss_sizes:
        print(f"FAISS, {args.dim}-d unit vectors, top-100, one query at a time:")
        for kind, n, ms, build_s in faiss_latency(args.faiss_sizes, args.dim, args.queries):
            print(f"  {kind:5s} n={n:>9,d}: {ms:8.2f} ms/query (built in {build_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
