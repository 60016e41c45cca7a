"""Does the review's 95 % interval hold the true precision of a map about 19 times in 20? Measured on maps
of the AID scene mosaic, where every tile's truth is known from its scene's class.

    .venv/bin/python benchmarks/review_coverage.py [--reviews 20] [--rounds 2] [--sample 10] [--resamples 200]
        [--threshold 0.5] [--tile-m 30] [--workdir DIR]

The 40 AID scenes of tests/data/scenes (4 classes x 10, 150 m cells at 1 m) are written as one UTM mosaic
(benchmarks/scene_mosaic.py, seed 7) and indexed with the bundled model in --tile-m tiles. Each simulated
review takes a class (the 4 in turn) and a seed: 3 positive and 3 negative tiles drawn at random, --rounds
rounds of feedback (the top 20 of rsir's feedback search marked from the truth each time), and the map of every tile
the resulting search scores >= --threshold (core/match_map: score_tiles, dissolve). A polygon is relevant
when most of its area lies in scenes of the class; the map's true precision is the share of its polygons
that are. The review draws --sample polygons (core/review.draw_sample, 3 strata), marks them from the truth
and estimates (core/review.estimate_precision). Printed: each review's map, truth, estimate and interval;
how many of the reviews' intervals hold the truth; and, for a steadier figure, the coverage over
--resamples further samples of each map (the maps stay; only the sample changes).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scene_mosaic import cell_class, scene_files, write_mosaic  # noqa: E402

SCENES = ROOT / "tests" / "data" / "scenes"
SCENE_PX = 150  # the AID crops' own size: 150 m cells at 1 m a pixel
ORIGIN = (500_000.0, 4_000_000.0)  # EPSG:32633, as tests/core/scene_mosaic.py
COLUMNS = 8
EXAMPLES = 3  # positive and negative tiles a review starts from
ROUND_K = 20  # hits marked in each round of feedback


@dataclass(frozen=True)
class Config:
    reviews: int
    rounds: int
    sample: int
    resamples: int
    threshold: float
    tile_m: float
    workdir: Path | None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of feedback before the map")
    parser.add_argument("--sample", type=int, default=10, help="polygons reviewed per map")
    parser.add_argument("--resamples", type=int, default=200, help="further samples of each map")
    parser.add_argument("--threshold", type=float, default=0.5, help="the map's threshold (probability)")
    parser.add_argument("--tile-m", type=float, default=30.0, help="tile side in metres (stride the same)")
    parser.add_argument("--workdir", type=Path, help="keep the mosaic and index here (default: a temporary folder)")
    return parser


def indexed_mosaic(folder: Path, tile_m: float):
    """(mosaic, index, classes, transform): the AID mosaic indexed with the bundled model."""
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    mosaic = folder / "mosaic.tif"
    classes, transform = write_mosaic(scene_files(SCENES), mosaic, SCENE_PX, 1.0, ORIGIN, "EPSG:32633", COLUMNS)
    started = time.perf_counter()
    summary = build_index(BuildParams(index_dir=folder / "idx", rasters=(mosaic,), model_path=DEFAULT_MODEL_PATH,
                                      tiling=TilingParams(tile_m=tile_m, stride_m=tile_m)))
    print(f"indexed {summary.tiles_total} tiles in {time.perf_counter() - started:.0f} s")
    return mosaic, folder / "idx", classes, transform


def class_area_shares(polygons, classes: dict, transform, label: str) -> np.ndarray:
    """Each polygon's share of its area in scenes of `label` (OGR intersections with the scene cells)."""
    from osgeo import ogr

    def square(xmin, ymin, xmax, ymax):
        return ogr.CreateGeometryFromWkt(f"POLYGON(({xmin} {ymin},{xmax} {ymin},{xmax} {ymax},{xmin} {ymax},"
                                         f"{xmin} {ymin}))")

    cells = []
    for (col, row), name in classes.items():
        if name == label:
            left, top = transform * (col, row)
            cells.append(square(left, top - SCENE_PX * transform.a, left + SCENE_PX * transform.a, top))
    shares = []
    for polygon in polygons:
        wkt = ",".join("(" + ",".join(f"{x} {y}" for x, y in list(ring) + [ring[0]]) + ")"
                       for ring in polygon.rings)
        geometry = ogr.CreateGeometryFromWkt(f"POLYGON({wkt})")
        inside = sum(surface_area(geometry.Intersection(cell)) for cell in cells)
        shares.append(inside / geometry.GetArea())
    return np.asarray(shares)


def surface_area(geometry) -> float:
    """The area of the surfaces in an intersection (polygons touching a cell along an edge give lines)."""
    from osgeo import ogr

    kind = ogr.GT_Flatten(geometry.GetGeometryType())
    if kind in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
        return geometry.GetArea()
    if kind == ogr.wkbGeometryCollection:
        return sum(surface_area(geometry.GetGeometryRef(i)) for i in range(geometry.GetGeometryCount()))
    return 0.0


def review_feedback(mosaic: Path, index: Path, classes: dict, transform, tile_m: float, label: str, rounds: int,
                    rng):
    """3 positive and 3 negative tiles of `label` at random, then rounds of feedback marked from the truth."""
    from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox, search_feedback
    from rsir_qgis_plugin.core.params import SearchParams

    side = round(tile_m / transform.a)  # pixels: the index's grid (stride = tile)
    rows, columns = len({r for _, r in classes}) * SCENE_PX, len({c for c, _ in classes}) * SCENE_PX
    corners = [(col, row) for row in range(0, rows - side + 1, side) for col in range(0, columns - side + 1, side)]
    truth = np.array([cell_class(classes, col, row, SCENE_PX) == label for col, row in corners])

    def box(col: int, row: int, positive: bool) -> LabelledBox:
        left, top = transform * (col, row)
        right, bottom = transform * (col + side, row + side)
        return LabelledBox(str(mosaic), (left, bottom, right, top), None, positive)

    feedback = Feedback(tuple(box(*corners[i], positive) for positive in (True, False)
                              for i in rng.choice(np.flatnonzero(truth == positive), EXAMPLES, replace=False)))
    for _ in range(rounds):
        for hit in search_feedback(index, feedback, SearchParams(k=ROUND_K)).hits:
            feedback = feedback.with_box(box(hit.window[0], hit.window[1],
                                             cell_class(classes, *hit.window[:2], SCENE_PX) == label))
    return feedback


def estimate(scores, ids, relevant: np.ndarray, n: int, seed: int):
    from rsir_qgis_plugin.core.review import draw_sample, estimate_precision

    sample = draw_sample(scores, ids, n, seed=seed)
    reviewed, found = [0] * len(sample.strata), [0] * len(sample.strata)
    for pick, h in zip(sample.picks, sample.stratum_of):
        reviewed[h - 1] += 1
        found[h - 1] += int(relevant[pick])
    return estimate_precision(sample.strata, reviewed, found)


def main(cfg: Config) -> None:
    from rsir_qgis_plugin.core.match_map import MapParams, dissolve, score_tiles

    print(f"config: {cfg}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = cfg.workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        mosaic, index, classes, transform = indexed_mosaic(folder, cfg.tile_m)
        labels = sorted(set(classes.values()))
        covered, widths, resampled, resampled_widths = 0, [], [], []
        print(f"{'review':>6} {'class':13} {'polygons':>8} {'truth':>6} {'estimate':>8} {'95 % interval':>14} covered")
        for review in range(cfg.reviews):
            label = labels[review % len(labels)]
            rng = np.random.default_rng(1000 + review)
            feedback = review_feedback(mosaic, index, classes, transform, cfg.tile_m, label, cfg.rounds, rng)
            match_map = dissolve(score_tiles(index, feedback, MapParams(threshold=cfg.threshold)), cfg.threshold)
            polygons = match_map.polygons
            relevant = class_area_shares(polygons, classes, transform, label) > 0.5
            truth = float(relevant.mean())
            scores, ids = [p.score_max for p in polygons], [p.map_id for p in polygons]
            got = estimate(scores, ids, relevant, cfg.sample, seed=review)
            hit = got.low <= truth <= got.high
            covered += hit
            widths.append(got.high - got.low)
            print(f"{review + 1:>6} {label:13} {len(polygons):>8} {truth:>6.3f} {got.precision:>8.3f} "
                  f"{got.low:>6.3f}-{got.high:<6.3f} {'yes' if hit else 'NO'}")
            held = []
            for again in range(cfg.resamples):
                more = estimate(scores, ids, relevant, cfg.sample, seed=10_000 + review * cfg.resamples + again)
                held.append(more.low <= truth <= more.high)
                resampled_widths.append(more.high - more.low)
            resampled += held
            if held:
                print(f"{'':>6} {'':13} {'':>8} {'':>6} {'':>8} {'':>14} {np.mean(held):.3f} of {len(held)} "
                      "further samples")
        print(f"\n{covered} of {cfg.reviews} intervals hold the true precision (95 % nominal: about "
              f"{0.95 * cfg.reviews:.0f}); mean width {np.mean(widths):.3f}, median {np.median(widths):.3f}")
        if resampled:
            print(f"over {len(resampled)} samples of the same maps: coverage {np.mean(resampled):.3f}, "
                  f"mean width {np.mean(resampled_widths):.3f}")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    main(Config(args.reviews, args.rounds, args.sample, args.resamples, args.threshold, args.tile_m, args.workdir))
