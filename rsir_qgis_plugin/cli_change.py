"""`rsir change`: search through time. Places of indexed before rasters ranked by how much they changed at the
after date (hot spots), or, with --like, by how like the marked change theirs is (search by change); places
as GeoJSON on stdout or written to --out, a line per pair of rasters and notes on stderr."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .cli_boxes import labelled_box, require_crs
from .cli_errors import EXIT_OK
from .cli_numbers import batch_size, bounded, hits
from .core.params import DEVICES

USAGE_NOTE = ("The before rasters must be indexed (their tiles are the places); the after rasters are read on "
              "each place's footprint and need not be indexed, nor share a grid, CRS or resolution. The after "
              "date's embeddings are kept in INDEX/pairs, so asking again about the same pair embeds nothing.")


def add_parser(commands) -> None:
    """The `change` command's parser, registered in cli.get_args_parser."""
    change = commands.add_parser("change", help="find what changed between two dates, or changes like a marked one",
                                 description=USAGE_NOTE)
    change.set_defaults(func=run)
    change.add_argument("index_dir", type=Path)
    change.add_argument("--before", type=Path, nargs="+", required=True, metavar="RASTER",
                        help="indexed raster(s) of the earlier date")
    change.add_argument("--after", type=Path, nargs="+", required=True, metavar="RASTER",
                        help="raster(s) of the later date, of the same ground")
    change.add_argument("--like", action="append", default=[], metavar="RASTER:XMIN,YMIN,XMAX,YMAX",
                        help="a box (on a before or after raster, in --crs or the raster's CRS) that changed the "
                             "way sought: rank places by how like it their change is (repeat for more)")
    change.add_argument("--unlike", action="append", default=[], metavar="RASTER:XMIN,YMIN,XMAX,YMAX",
                        help="a box whose change is not what is sought (with --like; repeat for more)")
    change.add_argument("--crs", help="CRS of the --like/--unlike boxes, e.g. EPSG:4326 (default: each raster's)")
    change.add_argument("-k", type=hits, default=20, help="number of places (default 20)")
    change.add_argument("--unusual", action="store_true",
                        help="hot spots by how unlike the later date of places that looked alike before a place's "
                             "later date is (discounts a season's or a sensor's change shared by every place "
                             "of a kind), instead of 1 - cosine of its two dates")
    change.add_argument("--min-score", type=bounded("a minimum score", -1.0, 2.0),
                        help="drop places scoring below this (1 - cosine: 0 to 2; with --like: -1 to 1)")
    change.add_argument("--keep-overlap", action="store_true", help="keep places overlapping the --like boxes")
    change.add_argument("--only-these-pairs", action="store_true",
                        help="with --like, rank only the pairs given, not also the index's other stored pairs")
    change.add_argument("--batch-size", type=batch_size, default=32)
    change.add_argument("--model", type=Path, help="ONNX model (default: the one the index was built with)")
    change.add_argument("--device", choices=DEVICES, default="auto")
    change.add_argument("--out", type=Path, help="write places to .gpkg (layer rsir_changes) or .geojson")
    change.add_argument("--out-crs", help="CRS of the output (default: the first before raster's)")
    change.add_argument("--save-as", metavar="NAME",
                        help="with --like, keep this search in the index folder as a standing search: every "
                             "`index build` then ranks the pairs of dates new to it (a newly indexed raster over "
                             "one it has seen, a pair compared since) and writes searches/NAME.new.gpkg")


def run(args) -> int:
    from .cli_progress import progress_bar
    from .core.change_params import ChangeParams
    from .core.change_rank import change_hotspots, search_change

    _refuse_early(args)
    params = ChangeParams(k=args.k, hotspots="unusual" if args.unusual else "change", min_score=args.min_score,
                          exclude_example_overlap=not args.keep_overlap, other_pairs=not args.only_these_pairs,
                          batch_size=args.batch_size, device=args.device, model_path=args.model)
    examples = _examples(args)
    with progress_bar() as progress:
        if examples:
            result = search_change(args.index_dir, args.before, args.after, examples, params, progress)
        else:
            result = change_hotspots(args.index_dir, args.before, args.after, params, progress)
    _report(result)
    _write(result, args)
    if args.save_as:
        from .core.standing_change import save_change_search

        path = save_change_search(args.index_dir, args.save_as, result, params)
        print(f"search saved as '{args.save_as}' ({path}); each `rsir index build` of this index now reports the "
              f"changes like it in the pairs new to it, in {path.with_suffix('.new.gpkg').name}", file=sys.stderr)
    return EXIT_OK


def _refuse_early(args) -> None:
    """What can be refused before the index and the model are loaded."""
    from .core.atomic import output_target
    from .core.errors import RsirError
    from .core.geometry import crs_from

    if args.out_crs:
        crs_from(args.out_crs)
    if args.out:
        output_target(args.out, args.index_dir)
    if args.unlike and not args.like:
        raise RsirError("--unlike marks a change that is not sought; give at least one --like too")
    if args.unusual and args.like:
        raise RsirError("--unusual scores hot spots; a search by change (--like) ranks by the change marked")
    if args.crs:
        crs_from(args.crs)
    if args.save_as:
        from .core.standing_file import refuse_taken

        if not args.like:
            raise RsirError("--save-as keeps a search by change example; give --like (hot spots cannot be saved)")
        refuse_taken(args.index_dir, args.save_as)


def _examples(args) -> list:
    """The --like and --unlike boxes as labelled boxes (positive and negative examples)."""
    from .core.examples import LabelledBox

    given = [(*labelled_box("--like", text), True) for text in args.like]
    given += [(*labelled_box("--unlike", text), False) for text in args.unlike]
    if args.crs:
        for raster in dict.fromkeys(raster for raster, _, _ in given):
            require_crs(Path(raster), args.crs)
    return [LabelledBox(raster=str(raster), bbox=box, crs=args.crs, positive=positive)
            for raster, box, positive in given]


def _report(result) -> None:
    """Each pair's places and skips, and the notes, on stderr."""
    for pair in result.pairs:
        print(f"rsir: {pair.describe()}", file=sys.stderr)
    for note in result.notes:
        print(f"rsir: note: {note}", file=sys.stderr)
    if result.all_excluded:
        print("rsir: warning: every place compared overlaps a --like box; use --keep-overlap to see them",
              file=sys.stderr)


def _write(result, args) -> None:
    from .core.changes_io import changes_to_geojson, write_changes

    if args.out:
        path = write_changes(result, args.out, args.out_crs, index_dir=args.index_dir)
        print(f"{len(result.hits)} places written to {path} ({result.scoring} scores; {result.seconds:.2f} s, "
              f"{result.provider})", file=sys.stderr)
    else:
        json.dump(changes_to_geojson(result, args.out_crs), sys.stdout)
        sys.stdout.write("\n")
