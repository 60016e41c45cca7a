"""`rsir search`: a query by a box of a raster, an image, or labelled boxes; hits as GeoJSON on stdout
or written to --out, notes and warnings on stderr."""
from __future__ import annotations

import json
import sys

from .cli_boxes import require_crs
from .cli_errors import EXIT_OK
from .cli_labels import feedback_query
from .core.errors import RsirError
from .core.params import SearchParams


def search(args) -> int:
    params = SearchParams(k=args.k, tta=args.tta, exclude_query_overlap=not args.keep_overlap,
                          min_score=args.min_score, device=args.device, model_path=args.model,
                          rerank=args.rerank, scale_aware=args.scale_aware)
    _refuse_early(args)
    result = _query(args, params)
    _notes(result)
    _write(result, args)
    if args.save_as:
        from .core.standing import save_search

        path = save_search(args.index_dir, args.save_as, result, params)
        print(f"search saved as '{args.save_as}' ({path}); each `rsir index build` of this index now reports "
              f"its new hits in {path.with_suffix('.new.gpkg').name}", file=sys.stderr)
    return EXIT_OK


def _refuse_early(args) -> None:
    """An output that cannot be written, or --image-gsd alone: refused before the index and the model
    are loaded."""
    from .core.atomic import output_target
    from .core.geometry import crs_from

    if args.out_crs:
        crs_from(args.out_crs)
    if args.save_as:
        from .core.standing_file import refuse_taken

        refuse_taken(args.index_dir, args.save_as)
    if args.out:
        output_target(args.out, args.index_dir)  # a device, a FIFO or the index's own files: refused now
    if args.image_gsd is not None and args.image is None:
        raise RsirError("--image-gsd gives the ground scale of --image; give --image too")


def _query(args, params: SearchParams):
    """The search the arguments ask for: by labelled boxes, by an image, or by a box of a raster."""
    from .core.search import search_box, search_image

    if args.positive or args.negative or args.labels or args.save_labels:
        return feedback_query(args, params)
    if args.image is not None:
        if args.raster or args.bbox:
            raise RsirError("give either --image or --raster with --bbox, not both")
        return search_image(args.index_dir, args.image, params, image_gsd=args.image_gsd)
    if args.raster is not None and args.bbox is not None:
        if args.crs:
            require_crs(args.raster, args.crs)
        return search_box(args.index_dir, args.raster, tuple(args.bbox), args.crs, params)
    raise RsirError("a query needs --raster and --bbox, --image, or labelled boxes (--positive, --labels)")


def _notes(result) -> None:
    """What the user should know about how the query was run, on stderr."""
    for note in result.notes:
        print(f"rsir: note: {note}", file=sys.stderr)
    if not result.query_indexed:
        print(f"rsir: note: {result.query_raster} is not in the index; its box was embedded with the bands "
              "chosen by colour interpretation (R, G, B, else 1-3)", file=sys.stderr)
    if result.all_excluded:
        print("rsir: warning: every indexed tile overlaps the query box, so none is left once the query "
              "area is excluded; use --keep-overlap to see them, or index more rasters", file=sys.stderr)


def _write(result, args) -> None:
    """The hits to --out (a line on stderr says where), else as GeoJSON on stdout."""
    from .core.hits_io import hits_to_geojson, write_hits

    if args.out:
        path = write_hits(result, args.out, args.out_crs, index_dir=args.index_dir)
        print(f"{len(result.hits)} hits written to {path} ({result.seconds:.2f} s on {result.provider})",
              file=sys.stderr)
    else:
        json.dump(hits_to_geojson(result, args.out_crs), sys.stdout)
        sys.stdout.write("\n")
