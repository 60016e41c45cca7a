"""Chunked embedding (core/blocks.py): one large raster built on 2 Dask worker processes against a local build.

    python benchmarks/chunked_build.py [--raster R] [--mosaic 2] [--block-tiles 512] [--rounds 2]
                                       [--model M.onnx] [--workers 2]

The raster is a COG (512 px tiles, JPEG) of `--mosaic` x `--mosaic` copies of a real orthophoto (the
OpenAerialMap sample of ../shared/data/rasters, 2048 px at 0.1 m), so one raster holds thousands of tiles
of the bundled model (128 px tiles at a 64 px stride by default). In alternating rounds, in one process (a
shared machine's slow spells hit every measurement alike), three fresh builds of it:

    local          build_index in this process, one onnxruntime session on all cores
    dask, chunked  a real dask.distributed cluster of `--workers` worker processes (1 task thread each,
                   started once, not timed), the raster cut into blocks of `--block-tiles` windows
    dask, whole    the same cluster, one task for the raster (block_tiles larger than the raster): the
                   build before chunked embedding, which one worker does alone

tiles/s is tiles embedded over the build's embedding step (reading, inference, shard writing; on Dask the
tasks, the client's reading back and joining of the blocks). The workers' model sessions are made by a
warm-up build first. The machine's load average is printed at the start and the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rasters import describe_layout, make_cog, source_raster  # noqa: E402

from rsir_qgis_plugin.core.builder import build_index  # noqa: E402
from rsir_qgis_plugin.core.params import BuildParams, TilingParams  # noqa: E402


def mosaic(source: Path, copies: int, out: Path) -> Path:
    """A COG of copies x copies of the source raster (mirrored in turn so that seams match), georeferenced
    from the source's corner."""
    import numpy as np
    import rasterio

    with rasterio.open(source) as src:
        pixels, profile = src.read(), src.profile.copy()
    rows = []
    for i in range(copies):
        row = [pixels[:, ::(-1 if i % 2 else 1), ::(-1 if j % 2 else 1)] for j in range(copies)]
        rows.append(np.concatenate(row, axis=2))
    big = np.ascontiguousarray(np.concatenate(rows, axis=1))
    profile.update(driver="GTiff", width=big.shape[2], height=big.shape[1], tiled=True, blockxsize=512,
                   blockysize=512, compress="DEFLATE", photometric="RGB")
    plain = out.with_suffix(".plain.tif")
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(big)
    make_cog(plain, out)
    plain.unlink()
    return out


def build(work: Path, name: str, raster: Path, model: Path | None, tiling: TilingParams, **changes):
    index = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    summary = build_index(BuildParams(index_dir=index, rasters=(raster,), model_path=model, tiling=tiling,
                                      **changes))
    return summary.tiles_indexed / summary.embed_seconds, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raster", type=Path, default=None, help="source raster (default: the OAM sample)")
    parser.add_argument("--mosaic", type=int, default=2, help="copies a side in the mosaic (default 2)")
    parser.add_argument("--block-tiles", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    parser.add_argument("--tile-size", type=int, default=None, help="tile size in px (default: the model's)")
    args = parser.parse_args()

    import distributed

    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    tiling = TilingParams(tile_px=args.tile_size)
    with tempfile.TemporaryDirectory(prefix="rsir-chunked-") as tmp:
        work = Path(tmp)
        raster = mosaic(args.raster or source_raster(), args.mosaic, work / "mosaic.tif")
        print(describe_layout(raster))
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=50)
        try:
            address = cluster.scheduler_address
            _, warm = build(work, "warmup", raster, args.model, tiling, dask=address, block_tiles=args.block_tiles)
            print(f"{warm.tiles_indexed} tiles, blocks of {args.block_tiles} windows; warm-up build on Dask "
                  f"{warm.embed_seconds:.1f} s ({warm.provider})")
            runs = {"local": {}, "dask, chunked": {"dask": address, "block_tiles": args.block_tiles},
                    "dask, whole": {"dask": address, "block_tiles": 10**9}}
            rates: dict[str, list[float]] = {name: [] for name in runs}
            for round_number in range(1, args.rounds + 1):
                for name, changes in runs.items():
                    rate, summary = build(work, name.replace(", ", "-"), raster, args.model, tiling, **changes)
                    rates[name].append(rate)
                    print(f"round {round_number} {name:14s} {summary.tiles_indexed} tiles in "
                          f"{summary.embed_seconds:6.1f} s = {rate:7.1f} tiles/s")
        finally:
            cluster.close()
    print(f"\nmedian tiles/s over {args.rounds} round(s), one {raster.name} of {warm.tiles_indexed} tiles:")
    local = statistics.median(rates["local"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:14s} {median:7.1f} tiles/s  ({median / local:.2f}x local)")
    print(f"load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
