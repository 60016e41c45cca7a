"""Index-build throughput against the model's own ceiling, on a COG and on a striped GeoTIFF; FAISS latency.

    python benchmarks/index_throughput.py [--raster R] [--model M.onnx] [--device auto|cpu|cuda]
                                          [--rounds 5] [--repeat 2] [--faiss-sizes 100000 1000000]

Prints, in alternating rounds in one process (so that a shared machine's slow spells hit every
measurement alike): (1) model-only throughput, the onnxruntime session alone on a ready float batch;
(2) end-to-end `build_index` throughput (reading, nodata checks, stretch, inference and shard writing,
overlapped) on a COG (512 px tiles, overviews) and on a striped GeoTIFF (16-row strips), both written
with rasterio from the same real raster; the ratio of each end-to-end round to the model-only round
just before it, and the median ratios (target >= 0.9 on CPU). Then (3) FAISS query latency for the
index kinds the store builds (`make_faiss_index` 'flat' and 'ivf', nprobe IVF_NPROBE) at the model's
embedding size, one query at a time, top-100, and which kind the store picks at each size.
The machine's load average is printed at the start and the end: a busy machine lowers every figure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_rasters import describe_layout, make_cog, make_striped, source_raster  # noqa: E402

from rsir_qgis_plugin.core.builder import build_index  # noqa: E402
from rsir_qgis_plugin.core.embedder import Embedder  # noqa: E402
from rsir_qgis_plugin.core.model import read_model  # noqa: E402
from rsir_qgis_plugin.core.params import BuildParams, TilingParams  # noqa: E402
from rsir_qgis_plugin.core.store import IVF_NPROBE, choose_kind, make_faiss_index  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raster", type=Path, default=None,
                        help="source raster (default: the OpenAerialMap sample, 2048 x 2048 RGB at 0.1 m)")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stride", type=int, default=None, help="tile stride in pixels (default half a tile)")
    parser.add_argument("--repeat", type=int, default=2, help="copies of each raster per build (more tiles)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of all measurements")
    parser.add_argument("--model-seconds", type=float, default=6.0, help="one model-only measurement, s")
    parser.add_argument("--faiss-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=50)
    return parser


def model_only(embedder: Embedder, batch_size: int, seconds: float) -> float:
    """Images per second of session.run alone on a ready, preprocessed batch."""
    size, bands = embedder.input_size, embedder.bands
    batch = embedder.preprocess(np.random.default_rng(0).integers(0, 255, (batch_size, bands, size, size),
                                                                   dtype=np.uint8))
    embedder.run_session(batch)  # warm-up: first run allocates
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        embedder.run_session(batch)
        done += batch_size
    return done / (time.perf_counter() - started)


def end_to_end(args, raster: Path, workdir: Path) -> tuple[float, int]:
    """tiles/s of a fresh build_index over `repeat` copies of `raster` (distinct files, all embedded)."""
    build = Path(tempfile.mkdtemp(prefix="build-", dir=workdir))
    try:
        rasters = []
        for i in range(args.repeat):
            copy = build / f"{raster.stem}-{i}{raster.suffix}"
            shutil.copy(raster, copy)
            rasters.append(copy)
        params = BuildParams(index_dir=build / "index", rasters=tuple(rasters), model_path=args.model,
                             tiling=TilingParams(stride_px=args.stride), device=args.device,
                             batch_size=args.batch_size)
        summary = build_index(params)
        if summary.failed:
            raise SystemExit(f"benchmark build failed: {summary.failed}")
        return summary.tiles_per_second, summary.tiles_indexed
    finally:
        shutil.rmtree(build, ignore_errors=True)


def faiss_latency(sizes: list[int], dim: int, queries: int) -> list[tuple[str, int, float, float, float]]:
    """(kind, n, median ms/query, p95 ms/query, build s) for the store's index kinds."""
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
                index.nprobe = min(IVF_NPROBE, index.nlist)  # as the store's reader sets it
            index.search(probe[:1], 100)
            times = []
            for q in probe:  # one query at a time, as a user asks them
                started = time.perf_counter()
                index.search(q[None], 100)
                times.append((time.perf_counter() - started) * 1000)
            rows.append((kind, n, statistics.median(times), float(np.percentile(times, 95)), build_s))
            del index
    return rows


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main(args) -> int:
    model = read_model(args.model)
    embedder = Embedder(model, args.device)
    c = model.contract
    print(f"{load()}; model {c.name} ({c.input_size} px, {c.embedding_dim}-d, {model.path.name}); "
          f"inference on {embedder.describe()}; batch {args.batch_size}")
    workdir = Path(tempfile.mkdtemp(prefix="rsir-bench-"))
    try:
        source = args.raster or source_raster()
        layouts = {"COG": make_cog(source, workdir / "cog.tif"),
                   "striped": make_striped(source, workdir / "striped.tif")}
        for name, path in layouts.items():
            print(f"  {name}: {describe_layout(path)} (from {source.name}), x{args.repeat} per build")
        ceilings: list[float] = []
        rates: dict[str, list[float]] = {name: [] for name in layouts}
        ratios: dict[str, list[float]] = {name: [] for name in layouts}
        for round_ in range(1, args.rounds + 1):
            line = []
            for name, path in layouts.items():
                ceiling = model_only(embedder, args.batch_size, args.model_seconds)
                rate, tiles = end_to_end(args, path, workdir)
                ceilings.append(ceiling)
                rates[name].append(rate)
                ratios[name].append(rate / ceiling)
                line.append(f"model-only {ceiling:6.1f} img/s, {name} {rate:6.1f} tiles/s ({tiles} tiles), "
                            f"ratio {rate / ceiling:.3f}")
            print(f"round {round_}: " + "; ".join(line), flush=True)
        print(f"model-only (onnxruntime session alone), median of {len(ceilings)}: "
              f"{statistics.median(ceilings):7.1f} img/s")
        for name in layouts:
            print(f"end-to-end build_index on the {name}, median: {statistics.median(rates[name]):7.1f} "
                  f"tiles/s; median ratio {statistics.median(ratios[name]):.3f} "
                  f"(rounds {min(ratios[name]):.3f}-{max(ratios[name]):.3f}; target >= 0.9 on CPU)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.faiss_sizes:
        dim = model.contract.embedding_dim
        print(f"FAISS, {dim}-d unit vectors (the model's size), top-100, one query at a time, "
              f"{args.queries} queries:")
        for kind, n, median_ms, p95_ms, build_s in faiss_latency(args.faiss_sizes, dim, args.queries):
            chosen = " (the store's choice at this size)" if choose_kind(n, None) == kind else ""
            print(f"  {kind:5s} n={n:>9,d}: median {median_ms:7.2f} ms/query, p95 {p95_ms:7.2f} ms "
                  f"(built in {build_s:.1f} s){chosen}")
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
