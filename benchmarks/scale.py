"""How rsir's index scales: a 10^7-tile index on this machine, and an end-to-end box query at 10^6.

    .venv/bin/python benchmarks/scale.py [--tiles 10000000] [--e2e-tiles 1000000] [--queries 200]

Part 1 writes a --tiles index through rsir's store (catalog + IVF-PQ segment + float16 copy) and
reports build time, size on disk, open time and memory of a fresh process, query latency
(p50/p95, k=10) and recall@10 against exact search. Part 2 answers box queries on the real sample
raster (read + embed + FAISS + catalog + NMS, rsir's search_box) in an index of --e2e-tiles tiles.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_index import (
    SAMPLE_RASTER,
    TILES_PER_RASTER,
    real_embeddings,
    synthetic_vectors,
    write_synthetic_index,
    write_synthetic_segments,
)

QUERY_SEED = 10**6


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=10_000_000)
    parser.add_argument("--segments", type=int, default=1,
                        help="part 1: write the tiles as this many successive builds (one segment each, then "
                             "tiered merging as index build runs it) instead of one")
    parser.add_argument("--e2e-tiles", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None, help="where the indexes go (default: a temp dir)")
    parser.add_argument("--e2e-dba", action="store_true",
                        help="part 2: write the index with DBA search vectors (timed) and query it re-ranked")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # internal: measure a fresh reader
    return parser


def probe(index_dir: Path, queries: np.ndarray) -> dict:
    """In a fresh process: open time, memory, and per-query latency of IndexReader.search (k=10)."""
    from rsir_qgis_plugin.core.store import IndexReader

    rss_before = _rss_mb()
    started = time.perf_counter()
    reader = IndexReader(index_dir)
    open_s = time.perf_counter() - started
    rss_open = _rss_mb()
    latencies, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = reader.search(query, 10)
        latencies.append(time.perf_counter() - started)
        found.append(ids.tolist())
    return {"open_s": open_s, "rss_start_mb": rss_before, "rss_open_mb": rss_open, "rss_end_mb": _rss_mb(),
            "file_mb": _rss_mb("RssFile"),
            "p50_ms": 1000 * float(np.percentile(latencies, 50)), "p95_ms": 1000 * float(np.percentile(latencies, 95)),
            "ids": found, "kind": reader.manifest["index_kind"]}


def _rss_mb(field: str = "RssAnon") -> float:
    """Private memory (RssAnon): file pages that mmap brings in (RssFile) are page cache, reclaimable."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def exact_top10(base: np.ndarray, tiles: int, queries: np.ndarray) -> np.ndarray:
    """Exact top-10 ids over the same synthetic vectors, regenerated raster by raster."""
    best_scores = np.full((len(queries), 10), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), 10), np.int64)
    for number, start in enumerate(range(0, tiles, TILES_PER_RASTER)):
        chunk = synthetic_vectors(base, min(TILES_PER_RASTER, tiles - start), number)
        scores = queries @ chunk.T
        scores = np.concatenate([best_scores, scores], axis=1)
        chunk_ids = np.broadcast_to(np.arange(start, start + len(chunk)), (len(queries), len(chunk)))
        ids = np.concatenate([best_ids, chunk_ids], axis=1)
        top = np.argsort(-scores, axis=1)[:, :10]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    return best_ids


def part_one(args, base: np.ndarray, workdir: Path) -> None:
    index = workdir / f"index-{args.tiles}"
    shutil.rmtree(index, ignore_errors=True)
    started = time.perf_counter()
    if args.segments > 1:
        from rsir_qgis_plugin.core.model import read_model
        from rsir_qgis_plugin.core.store.merge import merge_tiers

        manifest = write_synthetic_segments(index, args.tiles, base, args.segments)
        written_s = time.perf_counter() - started
        manifest, report = merge_tiers(index, manifest, read_model(None))
        print(f"{args.segments} builds written in {written_s:.0f} s; then {report.describe() or 'nothing merged'}")
    else:
        manifest = write_synthetic_index(index, args.tiles, base)
    build_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    queries = synthetic_vectors(base, args.queries, QUERY_SEED)
    np.save(workdir / "queries.npy", queries)
    done = subprocess.run([sys.executable, __file__, "--probe", str(index), "--workdir", str(workdir)],
                          capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout)
    truth = exact_top10(base, args.tiles, queries)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(measured["ids"], truth.tolist())])
    files: dict[str, float] = {}
    for segment in manifest["segments"]:
        for path in (index / segment["catalog"]).parent.iterdir():
            files[path.name] = files.get(path.name, 0.0) + path.stat().st_size / 1e9
    count = len(manifest["segments"])
    print(f"\n== {args.tiles:,} tiles, {'one' if count == 1 else count} {measured['kind']} segment(s) ==")
    print(f"build (catalog + FAISS training/adding + float16 copy{', merging' if args.segments > 1 else ''}): "
          f"{build_s:.0f} s "
          f"({args.tiles / build_s:,.0f} tiles/s)")
    print(f"size on disk: {size / 1e9:.2f} GB ({size / args.tiles:.0f} B/tile): "
          + ", ".join(f"{name} {gb:.2f} GB" for name, gb in sorted(files.items())))
    print(f"fresh process: open {measured['open_s']:.2f} s; private memory {measured['rss_start_mb']:.0f} MB at "
          f"start, {measured['rss_open_mb']:.0f} MB open, {measured['rss_end_mb']:.0f} MB after {args.queries} "
          f"queries, plus {measured['file_mb']:.0f} MB of index pages mapped from the page cache")
    print(f"query (k=10): p50 {measured['p50_ms']:.1f} ms, p95 {measured['p95_ms']:.1f} ms; "
          f"recall@10 vs exact {recall:.3f}")


def part_two(args, base: np.ndarray, workdir: Path) -> None:
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box
    from rsir_qgis_plugin.core.store import IndexReader, Shard

    sample_index = workdir / "sample-index"
    with IndexReader(sample_index) as reader:
        key = next(iter(reader.rasters.values())).shard
    real = {key: Shard.load(sample_index / "shards" / f"{key}.npz")}
    index = workdir / f"e2e-{args.e2e_tiles}"
    shutil.rmtree(index, ignore_errors=True)
    started = time.perf_counter()
    manifest = write_synthetic_index(index, args.e2e_tiles - len(real[key].vectors), base, seed=7, extra=real,
                                     dba=args.e2e_dba)
    written = time.perf_counter() - started
    dba = manifest["segments"][0].get("dba")
    print(f"\n== end-to-end box query (read + embed + FAISS + catalog + NMS), {manifest['tile_count']:,} tiles, "
          f"{manifest['index_kind']}{' with DBA' if dba else ''} ==")
    print(f"index written in {written:.0f} s" + (f", DBA {dba['seconds']:.0f} s of it ({dba['knn']} neighbours)"
                                                 if dba else ""))
    # As shipped before re-ranking, then re-ranked (αQE: two FAISS searches; on DBA vectors with --e2e-dba);
    # scale-aware (the default: this index holds tiles of two ground sizes, the sample's and the virtual
    # rasters'), then every tile against the box as drawn.
    for scale_aware, rerank in ((True, False), (True, True), (False, False), (False, True)):
        rng = np.random.default_rng(0)
        tiles = real[key].bounds  # query boxes on the sample raster's own imagery (its tiles are not nodata)
        latencies = []
        for _number in range(args.queries + 1):
            xmin, ymin, xmax, ymax = tiles[rng.integers(0, len(tiles))]
            size = rng.uniform(8.0, 12.0)  # metres: a parking lot, a roof, a bend of the river
            x0, y0 = rng.uniform(xmin, xmax - size), rng.uniform(ymin, ymax - size)
            started = time.perf_counter()
            search_box(index, SAMPLE_RASTER, (x0, y0, x0 + size, y0 + size), None,
                       SearchParams(k=20, rerank=rerank, scale_aware=scale_aware))
            latencies.append(time.perf_counter() - started)
        first, rest = latencies[0], np.array(latencies[1:])
        print(f"{'scale-aware' if scale_aware else 'one scale'}, {'αQE' if rerank else 'no re-ranking'}: first query"
              f"{' (opens index and model)' if not rerank and scale_aware else ''} {first * 1000:.0f} ms; "
              f"then p50 {np.percentile(rest, 50) * 1000:.0f} ms, "
              f"p95 {np.percentile(rest, 95) * 1000:.0f} ms over {len(rest)} queries (target p95 < 300 ms)")


def main(args) -> int:
    if args.probe:
        queries = np.load(args.workdir / "queries.npy")
        print(json.dumps(probe(args.probe, queries)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rsir-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"rsir scale benchmark in {workdir}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    base = real_embeddings(workdir)
    print(f"{len(base)} real tile embeddings of {SAMPLE_RASTER.name} as the base")
    if args.tiles:
        part_one(args, base, workdir)
    if args.e2e_tiles:
        part_two(args, base, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
