"""Query cost against an index's history: the same tiles in 1, 8 or 32 segments, before and after tiered merging,
and 30 nightly 1 % updates with merging on (and off, for comparison).

    .venv/bin/python benchmarks/segments_query.py [--tiles 1000000] [--nights 30] [--workdir /dev/shm/x]

The tiles are benchmarks/synthetic_index.py's (real embeddings of the sample raster, blended, on virtual
rasters of 10,000 tiles), written through rsir's store: segments by generation.commit_changes as builds
write them, merges by store/merge.merge_tiers as `index build` runs it after its commit. Queries:
IndexReader.search, k=10, in this process (p50/p95 of --queries). A night replaces one raster of 10,000
tiles (1 % of 10^6: its old tiles tombstoned, a new segment written) and then merges; its time is the
commit plus the merges (embedding, which a real build adds, is not counted). --workdir on a tmpfs
(/dev/shm) keeps the disk free: an index of 10^6 tiles is about 0.7 GB.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import QUERY_SEED, probe
from synthetic_index import TILES_PER_RASTER, raster_shard, real_embeddings, synthetic_vectors, write_synthetic_segments

from rsir_qgis_plugin.core.model import read_model
from rsir_qgis_plugin.core.store import commit_changes, live_rasters, read_manifest
from rsir_qgis_plugin.core.store.merge import merge_tiers


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None, help="where the indexes go (default: a temp dir)")
    parser.add_argument("--query-threads", type=int, default=None,
                        help="FAISS threads while querying (default: FAISS's, all cores); building keeps all")
    return parser


def timed_queries(index: Path, queries: np.ndarray, threads: int | None) -> dict:
    """scale.probe's figures, with FAISS limited to `threads` while it queries."""
    from rsir_qgis_plugin.core.store import faiss_module

    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads or before)
    try:
        return probe(index, queries)
    finally:
        faiss.omp_set_num_threads(before)


def line(label: str, figures: dict, extra: str = "") -> None:
    print(f"{label:34s} p50 {figures['p50_ms']:7.2f} ms  p95 {figures['p95_ms']:7.2f} ms  ({figures['kind']}){extra}",
          flush=True)


def part_segments(args, base: np.ndarray, queries: np.ndarray, workdir: Path, model) -> None:
    for segments in args.segments:
        index = workdir / f"seg{segments}"
        started = time.perf_counter()
        manifest = write_synthetic_segments(index, base=base, tiles=args.tiles, segments=segments)
        written = time.perf_counter() - started
        line(f"{args.tiles} tiles in {len(manifest['segments'])} segment(s)",
             timed_queries(index, queries, args.query_threads), f"  written in {written:.0f} s")
        started = time.perf_counter()
        manifest, report = merge_tiers(index, manifest, model)
        if report.merges:
            line(f"  after merging: {len(manifest['segments'])} segment(s)",
                 timed_queries(index, queries, args.query_threads),
                 f"  merged in {time.perf_counter() - started:.0f} s")
        else:
            print("  nothing to merge (no tier holds 4 segments)", flush=True)
        if segments == 1:  # the start of the nights: written once
            shutil.copytree(index, workdir / "one-segment")
        shutil.rmtree(index)


def part_nights(args, base: np.ndarray, queries: np.ndarray, workdir: Path, model, merge: bool) -> None:
    index = workdir / f"nights-{'merge' if merge else 'nomerge'}"
    if (workdir / "one-segment").is_dir():
        shutil.copytree(workdir / "one-segment", index)
        manifest = read_manifest(index)
    else:
        manifest = write_synthetic_segments(index, base=base, tiles=args.tiles, segments=1)
    rasters, seconds, p50s = args.tiles // TILES_PER_RASTER, [], []
    for night in range(args.nights):
        started = time.perf_counter()
        # 1 %: one raster replaced by a new version (its old tiles tombstoned), as a nightly build does
        old = live_rasters(index, manifest)[f"/archive/virtual-{night % rasters:05d}.tif"]
        new = {f"night{night:06d}": raster_shard(night % rasters, synthetic_vectors(base, TILES_PER_RASTER,
                                                                                    QUERY_SEED + 1 + night))}
        manifest = commit_changes(index, manifest, model, new, [old], set(), None)
        if merge:
            manifest, report = merge_tiers(index, manifest, model)
        seconds.append(time.perf_counter() - started)
        measured = night in (0, 9, 19, args.nights - 1)  # queries every night would take longer than the nights
        if measured or (merge and report.merges):
            figures = timed_queries(index, queries, args.query_threads) if measured else None
            p50s += [figures["p50_ms"]] if figures else []
            dead = sum(s["dead_tiles"] for s in manifest["segments"])
            print(f"  night {night + 1:2d}: {seconds[-1]:6.1f} s, {len(manifest['segments']):2d} segments, "
                  f"{dead} tombstoned tiles" + (f", p50 {figures['p50_ms']:.2f} ms p95 {figures['p95_ms']:.2f} ms"
                                                if figures else "")
                  + (f"; {report.describe()}" if merge and report.merges else ""), flush=True)
    print(f"{args.nights} nights, merging {'on' if merge else 'off'}: {np.mean(seconds):.1f} s a night "
          f"(max {max(seconds):.1f} s), {len(manifest['segments'])} segments after, query p50 {p50s[0]:.2f} ms "
          f"after night 1 -> {p50s[-1]:.2f} ms after night {args.nights}", flush=True)
    shutil.rmtree(index)


def main(args) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rsir-segments-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"rsir segments/query benchmark in {workdir}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    base = real_embeddings(workdir)
    queries = synthetic_vectors(base, args.queries, QUERY_SEED)
    model = read_model(None)
    part_segments(args, base, queries, workdir, model)
    if args.nights:
        part_nights(args, base, queries, workdir, model, merge=True)
        part_nights(args, base, queries, workdir, model, merge=False)
    for folder in ("sample-index", "one-segment"):
        shutil.rmtree(workdir / folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
