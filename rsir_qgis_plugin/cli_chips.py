"""`rsir export-chips`: the labelled boxes of a labels file as image chips, one folder per class, for
`python -m training.fit --data DIR` (core/chips.py; README "Teach rsir your target")."""
from __future__ import annotations

import sys
from pathlib import Path

from .cli_errors import EXIT_OK
from .cli_numbers import bounded

USAGE_NOTE = ("Each box is read as a query box is (the bands the raster was indexed with, resampled to the index "
              "model's input size) and written as a georeferenced GeoTIFF: positives to DIR/positive, negatives "
              "to DIR/negative (the class 'not the target'), with DIR/chips.csv (raster, box, label, CRS, file) "
              "and DIR/chips.json (the labels file, index and model they came from). DIR must be new, empty or "
              "an earlier chips folder, which is replaced whole.")

chips_per_class = bounded("--per-class (chips of each class)", 1, 10**9, integer=True)


def add_parser(commands) -> None:
    """The `export-chips` command's parser, registered in cli.get_args_parser."""
    chips = commands.add_parser("export-chips", help="write labelled boxes as image chips to train a model on",
                                description=USAGE_NOTE)
    chips.set_defaults(func=run)
    chips.add_argument("index_dir", type=Path)
    chips.add_argument("--labels", type=Path, required=True, metavar="FILE",
                       help="a .gpkg or .geojson labels layer (fields raster and label), e.g. from "
                            "`rsir search --save-labels` or the plugin's `rsir labels` layer")
    chips.add_argument("--out", type=Path, required=True, metavar="DIR", help="the chips folder to write")
    chips.add_argument("--per-class", type=chips_per_class, default=0, metavar="N",
                       help="at most N chips of each class, a seeded choice (default: every box)")
    chips.add_argument("--seed", type=int, default=0, help="seed of the --per-class choice (default 0)")


def run(args) -> int:
    from .cli_progress import progress_bar
    from .core.chips import ChipParams, export_chips

    params = ChipParams(index_dir=args.index_dir, labels=args.labels, out_dir=args.out,
                        per_class=args.per_class, seed=args.seed)
    with progress_bar() as progress:
        summary = export_chips(params, progress)
    for reason in summary.skipped:
        print(f"rsir: skipped {reason}", file=sys.stderr)
    for note in summary.notes:
        print(f"rsir: note: {note}", file=sys.stderr)
    print(summary.describe())
    return EXIT_OK
