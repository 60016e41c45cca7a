"""Headless command line: build and inspect indexes, run queries.

    python -m rsir_qgis_plugin index build INDEX_DIR RASTER... [options]
    python -m rsir_qgis_plugin index info INDEX_DIR
    python -m rsir_qgis_plugin search INDEX_DIR (--raster R --bbox XMIN YMIN XMAX YMAX [--crs C] | --image F)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core.errors import RsirError
from .core.params import DEVICES, BuildParams, SearchParams, TilingParams


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rsir_qgis_plugin",
                                     description="rsir: remote-sensing image retrieval (headless)")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="build or inspect an index").add_subparsers(
        dest="index_command", required=True)
    build = index.add_parser("build", help="add rasters to an index (incremental, resumable)")
    build.add_argument("index_dir", type=Path)
    build.add_argument("rasters", type=Path, nargs="*", help="rasters to add (none: refresh the index)")
    build.add_argument("--model", type=Path, help="ONNX model (default: the bundled model)")
    size = build.add_mutually_exclusive_group()
    size.add_argument("--tile-size", type=int, metavar="PX", help="tile size in pixels (default: model input)")
    size.add_argument("--tile-metres", type=float, metavar="M", help="tile size in ground metres")
    stride = build.add_mutually_exclusive_group()
    stride.add_argument("--stride", type=int, metavar="PX", help="stride in pixels (default: half a tile)")
    stride.add_argument("--stride-metres", type=float, metavar="M", help="stride in ground metres")
    build.add_argument("--bands", type=_bands, help="1-based bands, e.g. 4,3,2 (default: RGB)")
    build.add_argument("--device", choices=DEVICES, default="auto")
    build.add_argument("--batch-size", type=int, default=32)
    kind = build.add_mutually_exclusive_group()
    kind.add_argument("--approximate", dest="approximate", action="store_true", default=None,
                      help="approximate (IVF) search (default: above 250,000 tiles)")
    kind.add_argument("--exact", dest="approximate", action="store_false", help="exact search at any size")
    build.add_argument("--tta", action="store_true", help="embed tiles as the mean of 4 rotations (4x slower)")

    info = index.add_parser("info", help="describe an index")
    info.add_argument("index_dir", type=Path)

    search = commands.add_parser("search", help="find tiles like a box of a raster or an image")
    search.add_argument("index_dir", type=Path)
    search.add_argument("--raster", type=Path, help="raster holding the query box")
    search.add_argument("--bbox", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    search.add_argument("--crs", help="CRS of --bbox, e.g. EPSG:4326 (default: the raster's)")
    search.add_argument("--image", type=Path, help="an image file as the query")
    search.add_argument("-k", type=int, default=20, help="number of hits (default 20)")
    search.add_argument("--tta", action="store_true", help="embed the query as the mean of 4 rotations")
    search.add_argument("--min-score", type=float, help="drop hits scoring below this cosine similarity")
    search.add_argument("--keep-overlap", action="store_true", help="keep hits overlapping the query box")
    search.add_argument("--model", type=Path, help="ONNX model (default: the one the index was built with)")
    search.add_argument("--device", choices=DEVICES, default="auto")
    search.add_argument("--out", type=Path, help="write hits to .gpkg or .geojson instead of stdout")
    search.add_argument("--out-crs", help="CRS of the output (default: the query's)")
    return parser


def _bands(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bands are comma-separated numbers, got '{text}'") from None


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.command == "index" and args.index_command == "build":
            return build(args)
        if args.command == "index":
            return info(args)
        return search(args)
    except (RsirError, ValueError) as exc:
        print(f"rsir: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rsir: interrupted; the previous index is unchanged, run the build again to resume",
              file=sys.stderr)
        return 130


def build(args) -> int:
    from tqdm import tqdm

    from .core.builder import build_index

    tiling = TilingParams(tile_px=args.tile_size, tile_m=args.tile_metres, stride_px=args.stride,
                          stride_m=args.stride_metres, bands=args.bands)
    params = BuildParams(index_dir=args.index_dir, rasters=tuple(args.rasters), model_path=args.model,
                         tiling=tiling, device=args.device, batch_size=args.batch_size,
                         approximate=args.approximate, tta=args.tta)
    with tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
              file=sys.stderr, disable=None) as bar:
        def progress(percent: float, message: str) -> None:
            bar.update(percent - bar.n)
            bar.set_postfix_str(message, refresh=False)

        summary = build_index(params, progress)
    print(summary.describe())
    return 2 if summary.failed and not summary.tiles_total else 0


def info(args) -> int:
    from .core.store import read_index_info

    print(read_index_info(args.index_dir).describe())
    return 0


def search(args) -> int:
    from .core.hits_io import hits_to_geojson, write_hits
    from .core.search import search_box, search_image

    params = SearchParams(k=args.k, tta=args.tta, exclude_query_overlap=not args.keep_overlap,
                          min_score=args.min_score, device=args.device, model_path=args.model)
    if args.image is not None:
        if args.raster or args.bbox:
            raise RsirError("give either --image or --raster with --bbox, not both")
        result = search_image(args.index_dir, args.image, params)
    elif args.raster is not None and args.bbox is not None:
        result = search_box(args.index_dir, args.raster, tuple(args.bbox), args.crs, params)
    else:
        raise RsirError("a query needs --raster and --bbox, or --image")
    if args.out:
        path = write_hits(result, args.out, args.out_crs)
        print(f"{len(result.hits)} hits written to {path} ({result.seconds:.2f} s on {result.provider})",
              file=sys.stderr)
    else:
        json.dump(hits_to_geojson(result, args.out_crs), sys.stdout)
        sys.stdout.write("\n")
    return 0
