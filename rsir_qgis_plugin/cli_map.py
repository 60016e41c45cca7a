"""`rsir map`: every tile of an index that a feedback search (a labels file) scores at least a threshold,
dissolved into polygons and written to a map file (core/match_map.py, core/map_io.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from .cli_errors import EXIT_OK
from .cli_numbers import bounded
from .core.params import DEVICES

USAGE_NOTE = ("Scores every tile of the index with the classifier the labels train (as `rsir search --labels` "
              "does: its probability with at least two positive and two negative boxes, else the cosine "
              "with the Rocchio query), keeps the tiles scoring at least --threshold and merges those that "
              "touch or overlap, raster by raster in the raster's CRS, into polygons (layer rsir_map: "
              "map_id, raster, score_mean, score_max, tiles, area_m2; the threshold, labels, index and "
              "model recorded in the file).")


def add_parser(commands) -> None:
    """The `map` command's parser, registered in cli.get_args_parser."""
    mapping = commands.add_parser("map", help="map every match of a labelled search as polygons",
                                  description=USAGE_NOTE)
    mapping.set_defaults(func=run)
    mapping.add_argument("index_dir", type=Path)
    mapping.add_argument("--labels", type=Path, required=True,
                         help="labels file (.gpkg or .geojson: polygons with fields raster and label)")
    mapping.add_argument("--threshold", type=bounded("a threshold", -1.0, 1.0), required=True,
                         help="keep tiles scoring at least this (the probability `rsir search` reports, 0-1)")
    mapping.add_argument("--out", type=Path, required=True, help="map file to write: .gpkg or .geojson")
    mapping.add_argument("--tta", action="store_true", help="embed drawn label boxes with test-time augmentation")
    mapping.add_argument("--device", choices=DEVICES, default="auto")


def run(args) -> int:
    from .cli_progress import progress_bar
    from .core.atomic import output_target
    from .core.labels_io import load_labels
    from .core.map_io import map_format, write_map
    from .core.match_map import MapParams, dissolve, score_tiles

    map_format(args.out)  # refused before hours of scoring, not after
    output_target(args.out, args.index_dir)
    params = MapParams(threshold=args.threshold, device=args.device, tta=args.tta)
    read = load_labels(args.labels)
    for line in read.skipped:
        print(f"rsir: {args.labels}: {line}", file=sys.stderr)
    with progress_bar() as progress:
        scores = score_tiles(args.index_dir, read.feedback, params, str(args.labels.resolve()), progress)
        progress(100.0, "dissolving")
        result = dissolve(scores, params.threshold)
    write_map(result, args.out, args.index_dir)
    if scores.scoring != "probability":
        print("rsir: fewer than two positive and two negative boxes: scores are cosines with the Rocchio "
              "query, not probabilities", file=sys.stderr)
    print(f"{result.describe()}; written to {args.out}")
    return EXIT_OK
