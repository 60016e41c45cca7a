"""Headless command line: build and inspect indexes, run queries (`rsir`, or `python -m rsir_qgis_plugin`).

    rsir index build INDEX_DIR RASTER... [options]
    rsir index info|compact|repair INDEX_DIR
    rsir index export INDEX_DIR --geoparquet FILE.parquet
    rsir search INDEX_DIR (--raster R --bbox XMIN YMIN XMAX YMAX [--crs C] | --image F)
    rsir search INDEX_DIR --positive R:XMIN,YMIN,XMAX,YMAX... [--negative ...]
                          [--labels FILE] [--crs C] [--save-labels FILE]
                          [--save-as NAME]
    rsir change INDEX_DIR --before R... --after R... [--like R:XMIN,YMIN,XMAX,YMAX...] [--unlike ...]
    rsir searches list|show|remove INDEX_DIR [NAME]
    rsir review MAP --sample N --out SAMPLE [--seed S] | rsir review --marked SAMPLE [--labels-out L]
    rsir export-chips INDEX_DIR --labels FILE --out DIR [--per-class N]
    rsir doctor

Exit status: 0 success; 1 error (nothing changed; a build in which every raster failed included);
2 bad command line; 3 the build was committed but some rasters failed; 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import cli_change, cli_chips, cli_doctor, cli_index, cli_map, cli_review, cli_search, cli_searches
from .cli_errors import EXIT_ERROR, EXIT_INTERRUPTED, gdal_messages, with_gdal_reason
from .cli_numbers import (
    MAX_PX,
    Parser,
    batch_size,
    coordinate,
    ground_metres,
    hits,
    image_gsd,
    score,
    short,
    stride_px,
)
from .core.errors import RsirError
from .core.params import DEVICES, MIN_TILE_PX, parse_bands


def get_args_parser() -> argparse.ArgumentParser:
    """The command line; each command's parser names the function that runs it (`func`)."""
    parser = Parser(prog="rsir",  # also python -m rsir_qgis_plugin
                    description="rsir: remote-sensing image retrieval (headless)")
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="build or inspect an index").add_subparsers(
        dest="index_command", required=True)
    _add_build(index)
    _add_index_commands(index)
    doctor = commands.add_parser("doctor", help="report versions, packages, devices and models for a bug "
                                                "report; exit 1 naming what is missing when rsir cannot "
                                                "index and search")
    doctor.set_defaults(func=cli_doctor.doctor)
    _add_search(commands)
    cli_change.add_parser(commands)
    cli_map.add_parser(commands)
    cli_chips.add_parser(commands)
    _add_searches(commands)
    cli_review.add_parser(commands)
    return parser


def _add_build(index) -> None:
    build = index.add_parser("build", help="add rasters to an index (incremental, resumable)")
    build.set_defaults(func=cli_index.build, resumable=True)
    build.add_argument("index_dir", type=Path)
    build.add_argument("rasters", type=Path, nargs="*", help="rasters to add (none: refresh the index)")
    build.add_argument("--model", type=Path,
                       help="ONNX model, or a bundled one by name: default, default-int8 (default: the "
                            "index's own, else default)")
    size = build.add_mutually_exclusive_group()
    size.add_argument("--tile-size", type=_tile_px, metavar="PX",
                      help=f"tile size in pixels, at least {MIN_TILE_PX} (default: the model's tile size, "
                           "its input size unless it says otherwise)")
    size.add_argument("--tile-metres", type=ground_metres, metavar="M", help="tile size in ground metres")
    stride = build.add_mutually_exclusive_group()
    stride.add_argument("--stride", type=stride_px, metavar="PX",
                        help="stride in pixels (default: half a tile)")
    stride.add_argument("--stride-metres", type=ground_metres, metavar="M", help="stride in ground metres")
    build.add_argument("--bands", type=_bands, help="1-based bands, e.g. 4,3,2 or '4 3 2' (default: RGB)")
    build.add_argument("--device", choices=DEVICES, default="auto")
    build.add_argument("--batch-size", type=batch_size, default=32)
    kind = build.add_mutually_exclusive_group()
    kind.add_argument("--approximate", dest="approximate", action="store_true", default=None,
                      help="approximate (IVF) search (default: above 250,000 tiles)")
    kind.add_argument("--exact", dest="approximate", action="store_false", help="exact search at any size")
    build.add_argument("--tta", action="store_true",
                       help="embed tiles as the mean of 4 rotations (4x slower)")
    dba = build.add_mutually_exclusive_group()
    dba.add_argument("--dba", dest="dba", action="store_true", default=None,
                     help="database-side augmentation: each tile searched by the mean of it and its 10 nearest "
                          "neighbours (written with the index; kept by later builds)")
    dba.add_argument("--no-dba", dest="dba", action="store_false", help="remove DBA from an index that has it")
    build.add_argument("--force", action="store_true",
                       help="start afresh in a folder whose manifest is lost or damaged (shards are reused)")
    build.add_argument("--no-merge", dest="merge", action="store_false",
                       help="do not merge segments of similar size after the build (default: merge when 4 "
                            "share a size tier; `index compact` merges everything)")
    build.add_argument("--dask", metavar="ADDRESS|local",
                       help="embed on a Dask cluster: a scheduler address (the index folder and rasters on a "
                            "path every worker sees), or 'local' for worker processes on this machine")


def _add_index_commands(index) -> None:
    """index info, compact, repair and export."""
    info = index.add_parser("info", help="describe an index")
    info.set_defaults(func=cli_index.info)
    info.add_argument("index_dir", type=Path)

    compact = index.add_parser("compact", help="merge an index's segments into one, dropping replaced tiles")
    compact.set_defaults(func=cli_index.compact, resumable=True)
    compact.add_argument("index_dir", type=Path)
    compact.add_argument("--model", type=Path, help="the model the index was built with (default: its own)")

    repair = index.add_parser("repair", help="rebuild a damaged index's catalog and vectors from its shards")
    repair.set_defaults(func=cli_index.repair)
    repair.add_argument("index_dir", type=Path)
    repair.add_argument("--model", type=Path,
                        help="the model the index was built with (default: the bundled model)")

    export = index.add_parser("export",
                              help="write every tile's footprint and embedding to a GeoParquet file")
    export.set_defaults(func=cli_index.export)
    export.add_argument("index_dir", type=Path)
    export.add_argument("--geoparquet", type=Path, required=True, metavar="FILE",
                        help="the .parquet file to write (replaced atomically; needs pyarrow)")


def _add_search(commands) -> None:
    search = commands.add_parser("search", help="find tiles like a box of a raster or an image")
    search.set_defaults(func=cli_search.search)
    search.add_argument("index_dir", type=Path)
    search.add_argument("--raster", type=Path, help="raster holding the query box")
    search.add_argument("--bbox", type=coordinate, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    search.add_argument("--crs", help="CRS of --bbox, e.g. EPSG:4326 (default: the raster's)")
    search.add_argument("--image", type=Path, help="an image file as the query")
    search.add_argument("--image-gsd", type=image_gsd, metavar="METRES",
                        help="metres a pixel of --image (default: from its georeferencing); the image is "
                             "then embedded at the indexed tiles' ground scale")
    search.add_argument("-k", type=hits, default=20, help="number of hits (default 20)")
    search.add_argument("--tta", action="store_true", help="embed the query as the mean of 4 rotations")
    search.add_argument("--positive", action="append", default=[], metavar="RASTER:XMIN,YMIN,XMAX,YMAX",
                        help="a box like what is sought (relevance feedback; repeat for more; in --crs)")
    search.add_argument("--negative", action="append", default=[], metavar="RASTER:XMIN,YMIN,XMAX,YMAX",
                        help="a box unlike what is sought (repeat for more; in --crs)")
    search.add_argument("--labels", action="append", default=[], type=Path, metavar="FILE",
                        help="labelled boxes from a .gpkg or .geojson polygon layer with fields raster and "
                             "label (positive/negative); repeat for more")
    search.add_argument("--save-labels", type=Path, metavar="FILE",
                        help="write the labelled boxes used to .gpkg (layer rsir_labels) or .geojson")
    search.add_argument("--min-score", type=score,
                        help="drop hits scoring below this (cosine similarity; with 2+ positive and 2+ "
                             "negative examples, the classifier's probability)")
    search.add_argument("--keep-overlap", action="store_true",
                        help="keep hits overlapping the query box or labelled boxes (labelled tiles never "
                             "return)")
    search.add_argument("--no-rerank", dest="rerank", action="store_false",
                        help="rank by the query's own embedding: no query expansion (αQE) and not the index's "
                             "DBA vectors (the ranking of rsir before re-ranking)")
    search.add_argument("--no-scale-aware", dest="scale_aware", action="store_false",
                        help="one query embedding for every raster, even where the index holds tiles of several "
                             "ground sizes (by default the query is embedded at each and each raster's tiles "
                             "ranked at their own scale)")
    search.add_argument("--model", type=Path, help="ONNX model (default: the one the index was built with)")
    search.add_argument("--device", choices=DEVICES, default="auto")
    search.add_argument("--out", type=Path, help="write hits to .gpkg or .geojson instead of stdout")
    search.add_argument("--out-crs", help="CRS of the output (default: the query's)")
    search.add_argument("--save-as", metavar="NAME",
                        help="keep this search in the index folder as a standing search: every `index build` "
                             "then ranks the rasters it adds and writes their hits to searches/NAME.new.gpkg")


def _add_searches(commands) -> None:
    searches = commands.add_parser("searches", help="the standing searches saved in an index "
                                                    "(rsir search --save-as)").add_subparsers(
        dest="searches_command", required=True)
    listing = searches.add_parser("list", help="name each saved search, its kind and its new hits")
    listing.set_defaults(func=cli_searches.list_command)
    listing.add_argument("index_dir", type=Path)
    for name, func, text in (("show", cli_searches.show, "describe one saved search"),
                             ("remove", cli_searches.remove, "delete a saved search and its new hits")):
        command = searches.add_parser(name, help=text)
        command.set_defaults(func=func)
        command.add_argument("index_dir", type=Path)
        command.add_argument("name")


def _tile_px(text: str) -> int:
    """A tile size in pixels: smaller tiles hold too little to compare (core/params.py, MIN_TILE_PX)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a tile size is a whole number of pixels, got '{text}'") from None
    if value < MIN_TILE_PX:
        raise argparse.ArgumentTypeError(f"tiles need at least {MIN_TILE_PX} px, got {value}")
    if value > MAX_PX:
        raise argparse.ArgumentTypeError(f"a tile size must be at most {MAX_PX:,} px, got {short(value)}")
    return value


def _bands(text: str) -> tuple[int, ...]:
    try:
        bands = parse_bands(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if bands is None:  # an empty --bands is a slip, not a request for RGB (leave the option out for that)
        raise argparse.ArgumentTypeError(f"give band numbers, e.g. 4,3,2 or '4 3 2', got '{text[:80]}'")
    return bands


def main(argv: list[str] | None = None) -> int:
    """Run the command; an error is one line on stderr and an exit status (see the module's docstring)."""
    args = get_args_parser().parse_args(argv)
    if args.command == "doctor":  # a report of what is missing: no error of its own to turn into a line
        return args.func(args)
    with gdal_messages() as gdal:
        try:
            return args.func(args)
        except (RsirError, ValueError) as exc:
            print(f"rsir: error: {with_gdal_reason(exc, gdal)}", file=sys.stderr)
            return EXIT_ERROR
        except MemoryError:  # numpy's, where no memory was left even to name the array
            print("rsir: error: out of memory; use a smaller --batch-size, or free memory", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            if getattr(args, "resumable", False):  # index build and compact
                print("rsir: interrupted; the previous index is unchanged, run the build again to resume",
                      file=sys.stderr)
            else:
                print("rsir: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
