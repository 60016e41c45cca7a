"""What a search through time costs per 10^4 places (issue 23 item 6), on the real pairs of dates.

    .venv/bin/python benchmarks/change_cost.py [--rasters ../shared/data/rasters] [--workdir DIR]
                                               [--tile-px 32] [--stride-px 16] [--device auto] [--repeat 3]

Cases, each timed end to end through change_hotspots (k=20) and given in seconds per 10^4 places:
- NAIP 2009 -> 2020, a first question: the 2020 raster (not indexed, its grid 1 m off) is read on every
  place's footprint and embedded, then the pair's embeddings are stored in INDEX/pairs;
- the same pair asked again: the stored embeddings are read back (no reading, no embedding);
- Landsat Peru 1985 -> 2020 with both rasters indexed on the same grid: the after date's embeddings are
  the index's (no reading, no embedding), the pair then stored;
- the cost of the before date, for scale: indexing the NAIP 2009 raster (an index build).
The model is the bundled one; the figures depend on the machine (reported) and on the cores free.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NAIP = ("naip_m_4709963_se_14_1_20090818.tif", "naip_m_4709963_se_14_1_20200831.tif")
LANDSAT = ("landsat_peru_1985.tif", "landsat_peru_2020.tif")


@dataclass(frozen=True)
class Config:
    rasters: Path
    workdir: Path | None
    tile_px: int
    stride_px: int
    device: str
    repeat: int


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rasters", type=Path, default=ROOT.parent / "shared" / "data" / "rasters")
    parser.add_argument("--workdir", type=Path, help="where the indexes go (default: a temp dir, removed)")
    parser.add_argument("--tile-px", type=int, default=32)
    parser.add_argument("--stride-px", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=3, help="timings of the cached cases (the median is given)")
    return parser


def per_10k(seconds: float, places: int) -> str:
    return f"{seconds / places * 1e4:8.2f} s"


def main(cfg: Config) -> None:
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.change_params import ChangeParams
    from rsir_qgis_plugin.core.change_rank import change_hotspots
    from rsir_qgis_plugin.core.embedder import shared_embedder
    from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH, read_model
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    work = cfg.workdir or Path(tempfile.mkdtemp(prefix="rsir-change-cost-"))
    tiling = TilingParams(tile_px=cfg.tile_px, stride_px=cfg.stride_px)
    params = ChangeParams(k=20, device=cfg.device)
    embedder = shared_embedder(read_model(DEFAULT_MODEL_PATH), cfg.device)  # the session, made before timing
    print(f"{platform.node()}: {os.cpu_count()} CPUs, inference on {embedder.describe()}; tiles {cfg.tile_px} px, "
          f"stride {cfg.stride_px} px, bundled model ({embedder.input_size} px input)")
    rows = []
    try:
        before, after = (cfg.rasters / name for name in NAIP)
        index = work / "naip"
        shutil.rmtree(index, ignore_errors=True)
        started = time.perf_counter()
        built = build_index(BuildParams(index_dir=index, rasters=(before,), tiling=tiling, device=cfg.device))
        rows.append(("index the before date (NAIP 2009)", time.perf_counter() - started, built.tiles_indexed))
        started = time.perf_counter()
        first = change_hotspots(index, [before], [after], params)
        seconds = time.perf_counter() - started
        places = first.pairs[0].compared
        assert first.pairs[0].embedded == places, first.pairs[0].describe()
        rows.append(("NAIP, first question: read + embed 2020", seconds, places))
        rows.append(("NAIP, asked again: stored pair", _median(cfg.repeat, lambda: _stored(index, before, after,
                                                                                           params)), places))

        early, late = (cfg.rasters / name for name in LANDSAT)
        index = work / "landsat"
        shutil.rmtree(index, ignore_errors=True)
        build_index(BuildParams(index_dir=index, rasters=(early, late), tiling=tiling, device=cfg.device))
        started = time.perf_counter()
        reused = change_hotspots(index, [early], [late], params)
        counts = reused.pairs[0]
        assert counts.embedded == 0 and counts.reused == counts.compared, counts.describe()
        rows.append(("Landsat, after date indexed: reused", time.perf_counter() - started, counts.compared))
    finally:
        if cfg.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'case':44s} {'places':>7s} {'seconds':>8s} {'per 10^4 places':>16s}")
    for name, seconds, places in rows:
        print(f"{name:44s} {places:7d} {seconds:8.2f} {per_10k(seconds, places):>16s}")


def _stored(index: Path, before: Path, after: Path, params) -> float:
    from rsir_qgis_plugin.core.change_rank import change_hotspots

    started = time.perf_counter()
    result = change_hotspots(index, [before], [after], params)
    assert result.pairs[0].stored and result.pairs[0].embedded == 0
    return time.perf_counter() - started


def _median(repeat: int, timed) -> float:
    values = sorted(timed() for _ in range(max(1, repeat)))
    return values[len(values) // 2]


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    main(Config(rasters=args.rasters, workdir=args.workdir, tile_px=args.tile_px, stride_px=args.stride_px,
                device=args.device, repeat=args.repeat))
