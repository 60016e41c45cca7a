"""Box-query latency at 10^5 tiles, and the cost per query of re-embedding every tile instead.

    python benchmarks/query_latency.py [--tiles 100000] [--queries 40] [--model M.onnx] [--raster R]

1. A real index: `build_index` embeds a COG written from the real raster (bench_rasters). Its shard is
   then copied into synthetic rasters until the catalog holds --tiles rows: each copy is the same tile
   grid placed further east on the ground (so no two copies overlap: overlap exclusion and NMS work as
   on distinct places) with the real embeddings plus noise, renormalised (so the neighbourhoods are not
   those of random vectors). They are real `Shard` objects committed by `store.write_generation`, once
   as the exact index the store builds at this size ('flat') and once as its approximate one ('ivf').
2. The end-to-end box query, `core.search.search_box` (read the box from the raster, embed it, FAISS,
   catalog look-ups, overlap exclusion, NMS), for --queries boxes at random places of the raster:
   p50 and p95 wall time per query, warm (the session and the index opened by a first query); as shipped
   before re-ranking (rerank=False) and with αQE (two FAISS searches), then on the exact index written with
   DBA, whose time is set against the time of embedding that many tiles (part 3's rate).
3. Side by side in the same run: answering a query by re-embedding every tile (how the Deepness plugin
   answers one): every tile of the COG read and embedded as a build does, then scored against the
   query; measured on the real raster and scaled linearly to --tiles.
The machine's load average is printed at the start and the end.
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

from bench_rasters import describe_layout, make_cog, source_raster  # noqa: E402

from rsir_qgis_plugin.core.builder import build_index  # noqa: E402
from rsir_qgis_plugin.core.embedder import Embedder  # noqa: E402
from rsir_qgis_plugin.core.jobs import _produce_batches  # noqa: E402
from rsir_qgis_plugin.core.model import read_model  # noqa: E402
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams  # noqa: E402
from rsir_qgis_plugin.core.raster import describe  # noqa: E402
from rsir_qgis_plugin.core.search import search_box  # noqa: E402
from rsir_qgis_plugin.core.store import DbaRun, Shard, read_manifest, write_generation  # noqa: E402
from rsir_qgis_plugin.core.tiling import resolve_grid, tile_windows, window_bounds  # noqa: E402

NOISE = 0.15  # per-dimension noise added to the copied embeddings (unit vectors of 128 dimensions)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raster", type=Path, default=None, help="default: the OpenAerialMap sample")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--tiles", type=int, default=100_000, help="catalog rows of the index")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--reembed-rounds", type=int, default=2, help="re-embedding measurements (median)")
    return parser


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"


def synthetic_shards(real: Shard, total: int, workdir: Path) -> dict[str, Shard]:
    """Copies of `real` placed side by side on the ground eastwards until `total` tiles are held."""
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp

    rng = np.random.default_rng(0)
    record = real.record
    a, b, c, d, e, f = record["transform"][:6]
    step = (record["width"] + 256) * a  # one raster width and a gap further east
    crs = CRS.from_wkt(record["crs_wkt"])
    shards, held, i = {}, len(real.vectors), 0
    while held < total:
        i += 1
        n = min(len(real.vectors), total - held)
        transform = [a, b, c + i * step, d, e, f]
        windows = real.windows[:n]
        bounds = np.array([window_bounds(tuple(transform), tuple(w)) for w in windows.tolist()])
        lon, lat = warp(crs, CRS.from_epsg(4326), list(bounds[:, [0, 2, 2, 0]].ravel()),
                        list(bounds[:, [1, 1, 3, 3]].ravel()))
        lon, lat = np.asarray(lon).reshape(n, 4), np.asarray(lat).reshape(n, 4)
        vectors = real.vectors[:n] + NOISE * rng.standard_normal((n, real.vectors.shape[1]), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        shard = Shard(vectors=np.ascontiguousarray(vectors, np.float32), windows=windows.copy(),
                      bounds=bounds,
                      bounds_4326=np.stack([lon.min(1), lat.min(1), lon.max(1), lat.max(1)], axis=1),
                      record={**record, "path": str(workdir / "synthetic" / f"raster-{i:04d}.tif"),
                              "transform": transform})
        shards[f"synthetic{i:04d}"] = shard
        held += n
    return shards


def query_boxes(source, real: Shard, count: int) -> list[tuple[float, float, float, float]]:
    """Boxes of indexed tiles (places with content: the sample's black collar holds none), at random."""
    rng = np.random.default_rng(1)
    chosen = rng.choice(len(real.windows), size=count, replace=count > len(real.windows))
    return [window_bounds(source.transform, tuple(real.windows[i].tolist())) for i in chosen]


def time_queries(index_dir: Path, raster: Path, boxes, k: int, rerank: bool = True) -> tuple[list[float], int]:
    params = SearchParams(k=k, rerank=rerank)
    hits = len(search_box(index_dir, raster, boxes[0], None, params).hits)  # warm: session, index, catalog
    times = []
    for box in boxes:
        started = time.perf_counter()
        search_box(index_dir, raster, box, None, params)
        times.append((time.perf_counter() - started) * 1000)
    return times, hits


def reembed_every_tile(model, raster: Path, query: np.ndarray) -> tuple[float, int]:
    """Seconds to answer one query by embedding every tile of `raster` and scoring it (Deepness' way)."""
    embedder = Embedder(model, "cpu")
    source = describe(raster, None, model.contract.bands)
    tiling = TilingParams()
    grid = resolve_grid(source, tiling, model.contract.tile_px)
    from rsir_qgis_plugin.core.jobs import Job

    job = Job(source, tiling, grid, "reembed", tile_windows(source.width, source.height, grid), {})
    started, embedded = time.perf_counter(), 0
    for batch in _produce_batches([job], model.contract.input_size, 32, embedder.preprocess):
        if batch.tiles is not None:
            scores = embedder.embed(batch.tiles) @ query
            embedded += len(scores)
    return time.perf_counter() - started, embedded


def main(args) -> int:
    model = read_model(args.model)
    print(f"{load()}; model {model.contract.name} ({model.contract.embedding_dim}-d, {model.path.name})")
    workdir = Path(tempfile.mkdtemp(prefix="rsir-query-"))
    try:
        raster = make_cog(args.raster or source_raster(), workdir / "cog.tif")
        print(f"  {describe_layout(raster)}")
        index_dir = workdir / "index"
        summary = build_index(BuildParams(index_dir=index_dir, rasters=(raster,), model_path=args.model,
                                          device="cpu"))
        real_key = next(iter(p.stem for p in (index_dir / "shards").glob("*.npz")))
        real = Shard.load(index_dir / "shards" / f"{real_key}.npz")
        shards = {real_key: real, **synthetic_shards(real, args.tiles, workdir)}
        source = describe(raster, None, model.contract.bands)
        boxes = query_boxes(source, real, args.queries)
        print(f"index: {summary.tiles_indexed} real tiles of {raster.name} + synthetic copies = "
              f"{sum(len(s.vectors) for s in shards.values()):,d} catalog rows in {len(shards)} rasters")
        medians, dba_seconds = {}, 0.0
        # The store's kinds at this size, each ranked as shipped (--no-rerank) and re-ranked (αQE); then the
        # exact index with DBA (its neighbour search is exact up to 10^5 tiles: the costliest case).
        for kind, approximate, dba in (("flat", False, False), ("ivf", True, False), ("flat", False, True)):
            started = time.perf_counter()
            manifest = write_generation(index_dir, shards, model, approximate, read_manifest(index_dir),
                                        dba=DbaRun(index_dir, model.contract.embedding_dim) if dba else None)
            written = time.perf_counter() - started
            if dba:
                dba_seconds = manifest["segments"][0]["dba"]["seconds"]
            for rerank in (False, True) if not dba else (True,):
                times, hits = time_queries(index_dir, raster, boxes, args.k, rerank)
                name = f"{kind}{' + DBA' if dba else ''}, {'αQE' if rerank else 'no re-ranking'}"
                medians[name] = statistics.median(times)
                print(f"search_box, {name}, {manifest['index_kind']} index of {manifest['tile_count']:,d} tiles "
                      f"(written in {written:.1f} s{f', DBA {dba_seconds:.1f} s of it' if dba else ''}), "
                      f"k={args.k} ({hits} hits), {len(times)} queries: p50 {medians[name]:.1f} ms, "
                      f"p95 {np.percentile(times, 95):.1f} ms, max {max(times):.1f} ms", flush=True)
        query = Embedder(model, "cpu").embed(np.zeros((1, model.contract.bands, model.contract.input_size,
                                                       model.contract.input_size), np.uint8) + 100)[0]
        rounds = [reembed_every_tile(model, raster, query) for _ in range(args.reembed_rounds)]
        seconds = statistics.median(s for s, _ in rounds)
        embedded = rounds[0][1]
        per_query = seconds / embedded * args.tiles
        print(f"re-embedding every tile per query (Deepness' way): {seconds:.2f} s for the {embedded} "
              f"tiles of {raster.name} (median of {len(rounds)}), {embedded / seconds:.0f} tiles/s -> "
              f"{per_query:,.0f} s per query at {args.tiles:,d} tiles")
        flat, ivf = medians["flat, no re-ranking"], medians["ivf, no re-ranking"]
        print(f"per query at {args.tiles:,d} tiles: re-embedding {per_query:,.0f} s vs rsir's index "
              f"{flat:.0f} ms (flat, the store's choice here) / {ivf:.0f} ms (ivf): "
              f"{per_query * 1000 / flat:,.0f}x")
        embedding = seconds / embedded * args.tiles
        print(f"DBA at {args.tiles:,d} tiles (exact neighbours): {dba_seconds:.0f} s against {embedding:,.0f} s of "
              f"embedding them at {embedded / seconds:.0f} tiles/s: {100 * dba_seconds / embedding:.1f} % "
              "(target <= 20 %)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
