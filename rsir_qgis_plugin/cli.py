"""Headless command line: build and inspect indexes, run queries (`rsir`, or `python -m rsir_qgis_plugin`).

    rsir index build INDEX_DIR RASTER... [options]
    rsir index info|compact|repair INDEX_DIR
    rsir index export INDEX_DIR --geoparquet FILE.parquet
    rsir search INDEX_DIR (--raster R --bbox XMIN YMIN XMAX YMAX [--crs C] | --image F)
    rsir search INDEX_DIR --positive R:XMIN,YMIN,XMAX,YMAX... [--negative ...]
                          [--labels FILE] [--crs C] [--save-labels FILE]
    rsir doctor

Exit status: 0 success; 1 error (nothing changed; a build in which every raster failed included);
2 bad command line; 3 the build was committed but some rasters failed; 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from .cli_numbers import (
    MAX_PX,
    Parser,
    batch_size,
    coordinate,
    coordinate_problem,
    ground_metres,
    hits,
    image_gsd,
    score,
    short,
    stride_px,
)
from .cli_progress import progress_bar
from .core.errors import RsirError
from .core.params import DEVICES, MIN_TILE_PX, BuildParams, SearchParams, TilingParams, parse_bands

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 3, 130


def get_args_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rsir",  # also python -m rsir_qgis_plugin
                                     description="rsir: remote-sensing image retrieval (headless)")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="build or inspect an index").add_subparsers(
        dest="index_command", required=True)
    build = index.add_parser("build", help="add rasters to an index (incremental, resumable)")
    build.add_argument("index_dir", type=Path)
    build.add_argument("rasters", type=Path, nargs="*", help="rasters to add (none: refresh the index)")
    build.add_argument("--model", type=Path,
                       help="ONNX model, or a bundled one by name: default, default-int8 (default: the index's own, "
                            "else default)")
    size = build.add_mutually_exclusive_group()
    size.add_argument("--tile-size", type=_tile_px, metavar="PX",
                      help=f"tile size in pixels, at least {MIN_TILE_PX} (default: model input)")
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
    build.add_argument("--tta", action="store_true", help="embed tiles as the mean of 4 rotations (4x slower)")
    build.add_argument("--force", action="store_true",
                       help="start afresh in a folder whose manifest is lost or damaged (shards are reused)")
    build.add_argument("--dask", metavar="ADDRESS|local",
                       help="embed on a Dask cluster: a scheduler address (the index folder and rasters on a "
                            "path every worker sees), or 'local' for worker processes on this machine")

    info = index.add_parser("info", help="describe an index")
    info.add_argument("index_dir", type=Path)

    compact = index.add_parser("compact", help="merge an index's segments into one, dropping replaced tiles")
    compact.add_argument("index_dir", type=Path)
    compact.add_argument("--model", type=Path, help="the model the index was built with (default: its own)")

    repair = index.add_parser("repair", help="rebuild a damaged index's catalog and vectors from its shards")
    repair.add_argument("index_dir", type=Path)
    repair.add_argument("--model", type=Path,
                        help="the model the index was built with (default: the bundled model)")

    export = index.add_parser("export", help="write every tile's footprint and embedding to a GeoParquet file")
    export.add_argument("index_dir", type=Path)
    export.add_argument("--geoparquet", type=Path, required=True, metavar="FILE",
                        help="the .parquet file to write (replaced atomically; needs pyarrow)")

    commands.add_parser("doctor", help="report versions, packages, devices and models for a bug report; "
                                       "exit 1 naming what is missing when rsir cannot index and search")

    search = commands.add_parser("search", help="find tiles like a box of a raster or an image")
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
    search.add_argument("--model", type=Path, help="ONNX model (default: the one the index was built with)")
    search.add_argument("--device", choices=DEVICES, default="auto")
    search.add_argument("--out", type=Path, help="write hits to .gpkg or .geojson instead of stdout")
    search.add_argument("--out-crs", help="CRS of the output (default: the query's)")
    return parser


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
    args = get_args_parser().parse_args(argv)
    if args.command == "doctor":
        return doctor()
    with _gdal_messages() as gdal:
        try:
            if args.command == "index" and args.index_command == "build":
                return build(args)
            if args.command == "index" and args.index_command == "repair":
                return repair(args)
            if args.command == "index" and args.index_command == "compact":
                return compact(args)
            if args.command == "index" and args.index_command == "export":
                return export(args)
            if args.command == "index":
                return info(args)
            return search(args)
        except (RsirError, ValueError) as exc:
            print(f"rsir: error: {_with_gdal_reason(exc, gdal)}", file=sys.stderr)
            return EXIT_ERROR
        except MemoryError:  # numpy's, where no memory was left even to name the array
            print("rsir: error: out of memory; use a smaller --batch-size, or free memory", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            if args.command == "index" and args.index_command in ("build", "compact"):
                print("rsir: interrupted; the previous index is unchanged, run the build again to resume",
                      file=sys.stderr)
            else:
                print("rsir: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


class _GdalMessages(logging.Handler):
    """GDAL's error and warning messages, kept instead of printed ("ERROR 1: ..." on stderr).

    GDAL reports to one handler per process (osgeo's, shared with rasterio where both use one GDAL)
    or per rasterio environment (rasterio logs them); both end here.
    """

    def __init__(self):
        super().__init__(logging.INFO)
        self.failures: list[str] = []

    def gdal_handler(self, err_class: int, err_no: int, message: str) -> None:
        if err_class >= 3:  # CE_Failure, CE_Fatal
            self.failures.append(str(message).strip())

    def emit(self, record: logging.LogRecord) -> None:
        # rasterio logs "GDAL signalled an error: err_no=%r, msg=%r" with those two as arguments.
        if record.getMessage().startswith("GDAL signalled an error") and len(record.args or ()) == 2:
            self.failures.append(str(record.args[1]).strip())


@contextlib.contextmanager
def _gdal_messages():
    messages = _GdalMessages()
    rasterio_log = logging.getLogger("rasterio._env")
    saved = rasterio_log.propagate, rasterio_log.level
    rasterio_log.addHandler(messages)
    rasterio_log.propagate = False
    rasterio_log.setLevel(logging.INFO)  # rasterio logs GDAL failures at INFO
    gdal = None
    try:
        from osgeo import gdal

        gdal.SetErrorHandler(messages.gdal_handler)  # process-wide: build reads rasters in a worker thread
    except ImportError:  # rasterio without GDAL's own Python bindings: its logging covers it
        gdal = None
    try:
        yield messages
    finally:
        if gdal is not None:
            gdal.SetErrorHandler("CPLDefaultErrorHandler")
        rasterio_log.removeHandler(messages)
        rasterio_log.propagate, rasterio_log.level = saved


def _with_gdal_reason(exc: Exception, gdal: _GdalMessages) -> str:
    """rsir's message, plus GDAL's last failure message where a GDAL/PROJ failure caused the error and
    GDAL's words are not in the message already (rasterio often replaces PROJ's reason by its own)."""
    text = str(exc)
    caused_by_library = exc.__cause__ is not None or exc.__context__ is not None
    if not gdal.failures or not caused_by_library:
        return text
    reason = (gdal.failures[-1].splitlines() or [""])[0].strip()
    if not reason or _words(reason) in _words(text):
        return text
    return f"{text} (GDAL: {reason})"


def _words(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def build(args) -> int:
    from .core.memory import build_batch_size

    batch_size, note = build_batch_size(args.index_dir, args.model, args.batch_size)  # past memory: a crash
    if note:
        print(f"rsir: note: {note}", file=sys.stderr)
    tiling = TilingParams(tile_px=args.tile_size, tile_m=args.tile_metres, stride_px=args.stride,
                          stride_m=args.stride_metres, bands=args.bands)
    params = BuildParams(index_dir=args.index_dir, rasters=tuple(args.rasters), model_path=args.model,
                         tiling=tiling, device=args.device, batch_size=batch_size,
                         approximate=args.approximate, tta=args.tta, force=args.force,
                         dask=args.dask)
    return _run_build(params)


def compact(args) -> int:
    return _run_build(BuildParams(index_dir=args.index_dir, rasters=(), model_path=args.model, compact=True))


def _run_build(params: BuildParams) -> int:
    """A build with a progress bar on stderr and its summary on stdout; the exit status says how it went."""
    from .core.builder import build_index

    with progress_bar() as progress:
        summary = build_index(params, progress)
    print(summary.describe())
    if summary.failed:
        print(f"rsir: warning: {len(summary.failed)} raster(s) failed (listed above); the index was updated "
              f"with the others, and failed rasters indexed before keep their tiles (exit status {EXIT_PARTIAL})",
              file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def repair(args) -> int:
    from .core.store import repair_index

    print(repair_index(args.index_dir, args.model).describe())
    return EXIT_OK


def export(args) -> int:
    from .core.export_parquet import export_geoparquet

    with progress_bar() as progress:
        summary = export_geoparquet(args.index_dir, args.geoparquet, progress=progress)
    for line in summary.warnings():
        print(f"rsir: warning: {line}", file=sys.stderr)
    print(summary.describe())
    return EXIT_OK


def doctor() -> int:
    """The diagnostics report on stdout; each piece missing for indexing and search on stderr."""
    from .diagnostics import gather, problems, render

    checks = gather()
    print(render(checks), end="")
    missing = problems(checks)
    for line in missing:
        print(f"rsir: doctor: {line}", file=sys.stderr)
    return EXIT_ERROR if missing else EXIT_OK


def info(args) -> int:
    from .core.store import read_index_info

    print(read_index_info(args.index_dir).describe())
    return 0


def search(args) -> int:
    from .core.atomic import output_target
    from .core.geometry import crs_from
    from .core.hits_io import hits_to_geojson, write_hits
    from .core.search import search_box, search_image

    params = SearchParams(k=args.k, tta=args.tta, exclude_query_overlap=not args.keep_overlap,
                          min_score=args.min_score, device=args.device, model_path=args.model)
    if args.out_crs:
        crs_from(args.out_crs)  # refused before the index and the model are loaded
    if args.out:
        output_target(args.out, args.index_dir)  # a device, a FIFO or the index's own files: refused now
    if args.image_gsd is not None and args.image is None:
        raise RsirError("--image-gsd gives the ground scale of --image; give --image too")
    if args.positive or args.negative or args.labels or args.save_labels:
        result = _search_feedback(args, params)
    elif args.image is not None:
        if args.raster or args.bbox:
            raise RsirError("give either --image or --raster with --bbox, not both")
        result = search_image(args.index_dir, args.image, params, image_gsd=args.image_gsd)
    elif args.raster is not None and args.bbox is not None:
        if args.crs:
            _require_crs(args.raster, args.crs)
        result = search_box(args.index_dir, args.raster, tuple(args.bbox), args.crs, params)
    else:
        raise RsirError("a query needs --raster and --bbox, --image, or labelled boxes (--positive, --labels)")
    for note in result.notes:
        print(f"rsir: note: {note}", file=sys.stderr)
    if not result.query_indexed:
        print(f"rsir: note: {result.query_raster} is not in the index; its box was embedded with the bands "
              "chosen by colour interpretation (R, G, B, else 1-3)", file=sys.stderr)
    if result.all_excluded:
        print("rsir: warning: every indexed tile overlaps the query box, so none is left once the query "
              "area is excluded; use --keep-overlap to see them, or index more rasters", file=sys.stderr)
    if args.out:
        path = write_hits(result, args.out, args.out_crs, index_dir=args.index_dir)
        print(f"{len(result.hits)} hits written to {path} ({result.seconds:.2f} s on {result.provider})",
              file=sys.stderr)
    else:
        json.dump(hits_to_geojson(result, args.out_crs), sys.stdout)
        sys.stdout.write("\n")
    return EXIT_OK


def _search_feedback(args, params: SearchParams):
    """A search by labelled boxes: --raster/--bbox (a positive), --labels files, --positive/--negative."""
    from .core.atomic import output_target
    from .core.feedback import Feedback, LabelledBox, search_feedback
    from .core.labels_io import labels_format, load_labels, write_labels

    if args.save_labels:
        labels_format(args.save_labels)  # refused before anything is searched
        output_target(args.save_labels, args.index_dir)
    if args.image is not None:
        raise RsirError("give either --image or labelled boxes (--positive, --negative, --labels), not both")
    if (args.raster is None) != (args.bbox is None):
        raise RsirError("--raster and --bbox go together: the box is then a positive example")
    given = [(args.raster, tuple(args.bbox), True)] if args.raster is not None else []
    given += [(*_labelled_box("--positive", text), True) for text in args.positive]
    given += [(*_labelled_box("--negative", text), False) for text in args.negative]
    if args.crs:
        for raster in dict.fromkeys(raster for raster, _, _ in given):
            _require_crs(Path(raster), args.crs)
    feedback = Feedback()
    for path in args.labels:
        read = load_labels(path)
        for reason in read.skipped:
            print(f"rsir: note: {path}: {reason}; left out", file=sys.stderr)
        feedback = feedback.merged(read.feedback)
    for raster, box, positive in given:
        feedback = feedback.with_box(LabelledBox(raster=str(raster), bbox=box, crs=args.crs,
                                                 positive=positive))
    if not feedback.positives():
        found = f" (found {len(feedback.negatives())} negative)" if feedback.boxes else ""
        raise RsirError("relevance feedback needs at least one positive box: give --positive "
                        f"RASTER:XMIN,YMIN,XMAX,YMAX, --raster with --bbox, or --labels with one{found}")
    result = search_feedback(args.index_dir, feedback, params)
    used = result.feedback
    how = ("a classifier (scores are its probability)" if result.scoring == "probability"
           else "the mean of the examples (scores are cosine similarities)")
    print(f"rsir: note: ranked by {how} of {len(used.positives())} positive and {len(used.negatives())} "
          "negative example(s)", file=sys.stderr)
    if args.save_labels:
        path = write_labels(used, args.save_labels, index_dir=args.index_dir)
        print(f"{len(used.boxes)} labelled boxes written to {path}", file=sys.stderr)
    return result


def _labelled_box(option: str, text: str) -> tuple[str, tuple[float, ...]]:
    """RASTER:XMIN,YMIN,XMAX,YMAX (the raster path may hold ':', as C:\\ does) as (raster, box)."""
    raster, colon, numbers = text.rpartition(":")
    form = "RASTER:XMIN,YMIN,XMAX,YMAX"
    if not colon:
        raise RsirError(f"{option} '{text}': expected {form}")
    if not raster.strip():
        raise RsirError(f"{option} '{text}': no raster before the ':' (expected {form})")
    values = [v.strip() for v in numbers.split(",")]
    if len(values) != 4:
        raise RsirError(f"{option} '{text}': expected 4 numbers XMIN,YMIN,XMAX,YMAX after the raster, "
                        f"got {len(values)}")
    try:
        numbers = tuple(float(v) for v in values)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise RsirError(f"{option} '{text}': '{bad}' is not a number (expected {form})") from None
    problem = next(filter(None, map(coordinate_problem, numbers)), None)
    if problem:
        raise RsirError(f"{option} '{text[:120]}': {problem}")
    return raster, numbers


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _require_crs(raster: Path, crs: str) -> None:
    """--crs on a raster without a CRS, or with a local one (a site grid, which no other CRS converts to),
    cannot place the box: say so rather than ignore it."""
    from .core.geometry import crs_from, crs_name, reaches_lonlat
    from .core.raster import open_dataset

    try:
        with open_dataset(raster) as dataset:
            crs_wkt = dataset.crs.to_wkt() if dataset.crs else ""
    except RsirError:
        return  # the search names what is wrong with the file
    if not crs_wkt:
        raise RsirError(f"{raster}: has no CRS, so a box in {crs} cannot be placed on it; give --bbox in "
                        "the raster's own coordinates and leave out --crs")
    if not reaches_lonlat(crs_wkt) and crs_from(crs) != crs_from(crs_wkt):
        raise RsirError(f"{raster}: has a local CRS ({crs_name(crs_wkt)}) that no other CRS converts to, "
                        f"so a box in {crs} cannot be placed on it; give --bbox in the raster's own "
                        "coordinates and leave out --crs")
