"""`rsir review`: how far to trust a map. `rsir review MAP --sample N --out F` writes a random sample of
the map's polygons, stratified by score, to mark yes/no (field `relevant`); `rsir review --marked F`
prints the estimated precision with 95 % intervals, for the map and per score stratum, and with
--labels-out writes the marked polygons as labels for the next feedback search."""
from __future__ import annotations

import sys
from pathlib import Path

from .cli_errors import EXIT_OK
from .cli_numbers import bounded

MAX_SAMPLE = 10_000  # polygons a person marks by hand, with room to spare
USAGE_NOTE = ("Mark each polygon of the sample in QGIS or any GIS: field 'relevant' = yes or no. The estimate "
              "weights each score stratum by its share of the map; its 95 %% interval is a stratified Wilson "
              "interval (docs/mapping.md, Review a sample).")


def add_parser(commands) -> None:
    """The `review` command's parser, registered in cli.get_args_parser."""
    review = commands.add_parser("review", help="estimate a map's precision from a reviewed random sample",
                                 description=USAGE_NOTE)
    review.set_defaults(func=run)
    review.add_argument("map", type=Path, nargs="?", help="a map file written by `rsir map` (.gpkg or .geojson)")
    review.add_argument("--sample", type=bounded("a sample size", 1, MAX_SAMPLE, integer=True), metavar="N",
                        help="polygons to draw for review (with MAP)")
    review.add_argument("--strata", type=bounded("a number of strata", 1, 20, integer=True), default=3,
                        metavar="K", help="score strata (equal counts of the map's polygons by score_max; "
                                          "default 3)")
    review.add_argument("--seed", type=bounded("a seed", 0, 2**63 - 1, integer=True), metavar="S",
                        help="random seed, to draw the same sample again (default: a new sample each time)")
    review.add_argument("--out", type=Path, help="the sample to mark: .gpkg (layer rsir_review) or .geojson")
    review.add_argument("--marked", type=Path, metavar="FILE", help="a marked sample: print the estimate")
    review.add_argument("--labels-out", type=Path, metavar="FILE",
                        help="with --marked: write the marked polygons as labels (.gpkg or .geojson; relevant = "
                             "positive) for `rsir search --labels` and `rsir map --labels`")


def run(args) -> int:
    from .core.errors import RsirError

    if args.marked is not None:
        if args.map is not None or args.sample is not None or args.out is not None:
            raise RsirError("--marked estimates from a reviewed sample; give MAP --sample N --out F to draw one")
        return _estimate(args)
    if args.map is None or args.sample is None or args.out is None:
        raise RsirError("give MAP --sample N --out FILE to draw a sample, or --marked FILE to estimate from one")
    if args.labels_out is not None:
        raise RsirError("--labels-out goes with --marked: the labels are the marked polygons")
    return _draw(args)


def _draw(args) -> int:
    from .core.atomic import output_target
    from .core.errors import RsirError
    from .core.map_io import read_map
    from .core.review import draw_sample
    from .core.review_io import sample_review, write_review

    output_target(args.out, None)  # refused before the map is read
    if args.out.resolve() == args.map.resolve():
        raise RsirError(f"{args.out}: is the map itself; write the sample to another file")
    match_map = read_map(args.map)
    polygons = match_map.polygons
    sample = draw_sample([p.score_max for p in polygons], [p.map_id for p in polygons], args.sample,
                         args.strata, args.seed)
    path = write_review(sample_review(match_map, sample), args.out)
    print(f"rsir: {len(sample.picks)} of {len(polygons)} polygons written to {path} in {len(sample.strata)} score "
          "strata:", file=sys.stderr)
    for stratum in sample.strata:
        print(f"rsir:   {stratum.describe()}: {sample.stratum_of.count(stratum.number)} to review", file=sys.stderr)
    print(f"rsir: mark field 'relevant' yes or no, then: rsir review --marked {path}", file=sys.stderr)
    return EXIT_OK


def _estimate(args) -> int:
    from .core.errors import RsirError
    from .core.labels_io import labels_format
    from .core.review_io import read_review, write_review_labels

    if args.labels_out is not None:
        labels_format(args.labels_out)
        if args.labels_out.resolve() == args.marked.resolve():
            raise RsirError(f"{args.labels_out}: is the marked sample itself; write the labels to another file")
    review = read_review(args.marked)
    if review.marked == 0:
        raise RsirError(f"{args.marked}: no polygon is marked yet: fill field 'relevant' with yes or no")
    estimate = review.estimate()
    for line in estimate.describe():
        print(line)
    unmarked = len(review.items) - review.marked
    if unmarked:
        print(f"rsir: note: {unmarked} of {len(review.items)} polygons are not marked and were left out; "
              "the estimate holds if they are like the marked ones of their stratum", file=sys.stderr)
    if args.labels_out is not None:
        path, positives, negatives = write_review_labels(review, args.labels_out)
        print(f"rsir: {positives} positive and {negatives} negative labels written to {path}", file=sys.stderr)
    return EXIT_OK
