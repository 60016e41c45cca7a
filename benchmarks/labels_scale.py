"""Reading large labels files (issue 20, item 16): time per stage for GeoPackages of N features.

    .venv/bin/python benchmarks/labels_scale.py [--features 8000 100000 200000] [--crs 4326] [--workdir DIR]

Writes a real GeoPackage (layer rsir_labels, OGR) of N polygons on one real GeoTIFF (EPSG:3857), in
--crs (4326: every polygon is reprojected to the raster's CRS; 3857: none is), then times
load_labels (reading, checking and reprojecting every feature), Feedback.merged (how the command line
joins labels files) and Feedback.latest (search_feedback's one-label-per-box step). A file over
labels_io.MAX_LABELS is refused: the time to refuse it is printed. Set PYTHONPATH to another checkout's
folder to time that code instead (this script only appends its own checkout to sys.path).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # appended: a PYTHONPATH checkout (the code before a change) wins

RASTER_ORIGIN = (1_669_792.0, 4_865_942.0)  # EPSG:3857, near 15 E 40 N
PIXEL_M = 2.0


@dataclass(frozen=True)
class Config:
    features: tuple[int, ...]
    crs: int
    workdir: Path | None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, nargs="+", default=[8000, 100_000, 200_000])
    parser.add_argument("--crs", type=int, choices=(4326, 3857), default=4326,
                        help="the labels layer's CRS (4326: reprojected to the raster's EPSG:3857)")
    parser.add_argument("--workdir", type=Path, default=None)
    return parser


def write_raster(path: Path) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8",
                       crs="EPSG:3857", transform=from_origin(*RASTER_ORIGIN, PIXEL_M, PIXEL_M)) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8))
    return path


def write_labels_file(path: Path, raster: Path, n: int, epsg: int) -> None:
    """N random 16-64 m boxes on the raster, half positive, as OGR writes a GeoPackage."""
    from rasterio.warp import transform

    from benchmarks.labels_gpkg import write_labels_gpkg

    rng = np.random.default_rng(1)
    x0 = RASTER_ORIGIN[0] + rng.uniform(0, 400, n)
    y0 = RASTER_ORIGIN[1] - rng.uniform(64, 500, n)
    size = rng.uniform(16, 64, n)
    corners = [(x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size)]
    if epsg != 3857:
        corners = [tuple(np.asarray(v) for v in transform("EPSG:3857", f"EPSG:{epsg}", list(xs), list(ys)))
                   for xs, ys in corners]
    rings = ([(float(xs[i]), float(ys[i])) for xs, ys in corners] for i in range(n))
    write_labels_gpkg(path, ((str(raster), "positive" if i % 2 else "negative", ring)
                             for i, ring in enumerate(rings)), epsg)


def main(cfg: Config) -> None:
    from rsir_qgis_plugin.core.errors import RsirError
    from rsir_qgis_plugin.core.feedback import Feedback
    from rsir_qgis_plugin.core.labels_io import load_labels

    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="rsir-labels-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    raster = write_raster(workdir / "raster.tif")
    print(f"config: {cfg}; code: {sys.modules['rsir_qgis_plugin'].__file__}")
    for n in cfg.features:
        path = workdir / f"labels-{n}-{cfg.crs}.gpkg"
        if not path.exists():
            write_labels_file(path, raster, n, cfg.crs)
        started = time.perf_counter()
        try:
            read = load_labels(path)
        except RsirError as exc:
            print(f"{n:>7} features: refused in {time.perf_counter() - started:.2f} s: {exc}")
            continue
        loaded = time.perf_counter()
        merged = Feedback().merged(read.feedback)
        joined = time.perf_counter()
        merged.latest()
        done = time.perf_counter()
        print(f"{n:>7} features: load_labels {loaded - started:7.2f} s, merged {joined - loaded:7.2f} s, "
              f"latest {done - joined:7.2f} s; {len(read.feedback.boxes)} boxes, {len(read.skipped)} skipped")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    main(Config(features=tuple(args.features), crs=args.crs, workdir=args.workdir))
