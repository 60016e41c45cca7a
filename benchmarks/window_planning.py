"""Peak memory of planning a huge sparse raster's tile windows: the old list of tuples against WindowPlan.

    .venv/bin/python benchmarks/window_planning.py [--size 100000] [--tile 32] [--stride 16] [--workdir DIR]

Writes a real SIZE x SIZE GeoTIFF (uint8, tiled, DEFLATE, nodata 0, only one 512 px block of pixels:
a few kilobytes on disk), then in a fresh process per mode measures the peak resident memory over
the process's baseline (ru_maxrss after the imports) of:
  list    the windows as rsir planned them before (a list of (col, row, w, h) tuples, kept by the job)
  plan    describe + resolve_grid + tile_windows, as a build plans a raster now (WindowPlan)
  stream  the plan, then every window passed through read_tiles' strip grouping without reading pixels
and prints each figure, the windows counted, the seconds taken and the list/plan ratio.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_sparse_raster(path: Path, size: int) -> Path:
    """A SIZE x SIZE 3-band uint8 GeoTIFF whose only written pixels are one block near the origin."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    if path.exists():
        return path
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:3857", transform=from_origin(1_000_000.0, 6_000_000.0, 0.5, 0.5), nodata=0,
                       tiled=True, blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True,
                       BIGTIFF="YES") as dst:
        pixels = np.random.default_rng(0).integers(1, 255, (3, 512, 512), dtype=np.uint8)
        dst.write(pixels, window=Window(0, 0, 512, 512))
    return path


def old_tile_windows(width: int, height: int, grid) -> list:
    """rsir's planning before WindowPlan: every window as a tuple in one list."""
    from rsir_qgis_plugin.core.tiling import axis_offsets

    tile_w, tile_h = min(grid.tile_px, width), min(grid.tile_px, height)
    return [(col, row, tile_w, tile_h)
            for row in axis_offsets(height, grid.tile_px, grid.stride_px)
            for col in axis_offsets(width, grid.tile_px, grid.stride_px)]


def measure(mode: str, raster: str, tile: int, stride: int) -> dict:
    """In this (fresh) process: plan the raster's windows one way; peak memory over the baseline."""
    from rsir_qgis_plugin.core.params import TilingParams
    from rsir_qgis_plugin.core.raster import describe
    from rsir_qgis_plugin.core.tiling import _strips, resolve_grid, tile_windows

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    source = describe(raster, None, 3)
    grid = resolve_grid(source, TilingParams(tile_px=tile, stride_px=stride), tile)
    if mode == "list":
        windows = old_tile_windows(source.width, source.height, grid)
        count = len(windows)
    else:
        windows = tile_windows(source.width, source.height, grid)
        count = len(windows)
        if mode == "stream":
            count = sum(len(strip) for strip in _strips(windows, tile))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "windows": count, "peak_mb": (peak - baseline) / 1024,
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--tile", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "rsir-window-planning")
    parser.add_argument("--modes", nargs="+", default=["list", "plan", "stream"])
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--raster", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.raster, args.tile, args.stride)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    raster = write_sparse_raster(args.workdir / f"sparse-{args.size}.tif", args.size)
    print(f"{raster}: {args.size} x {args.size} px, {raster.stat().st_size / 1e3:.0f} kB on disk; "
          f"{args.tile} px tiles, {args.stride} px stride")
    results = {}
    for mode in args.modes:
        done = subprocess.run([sys.executable, __file__, "--measure", mode, "--raster", str(raster),
                               "--tile", str(args.tile), "--stride", str(args.stride)],
                              capture_output=True, text=True, check=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:7s} {r['windows']:>12,} windows  peak {r['peak_mb']:9.1f} MB over baseline  "
              f"{r['seconds']:7.1f} s")
    if "list" in results and "plan" in results:
        plan_mb = max(results["plan"]["peak_mb"], 0.1)  # ru_maxrss counts in kB pages: a floor of 0.1 MB
        print(f"ratio list/plan peak memory: {results['list']['peak_mb'] / plan_mb:,.0f}x or more")


if __name__ == "__main__":
    main()
