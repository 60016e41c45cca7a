"""`rsir index build|compact|repair|export|info`: each command reads its arguments, calls the core, and
prints the core's summary (progress on stderr, the summary on stdout); the exit status says how it went."""
from __future__ import annotations

import sys

from .cli_errors import EXIT_OK, EXIT_PARTIAL
from .cli_progress import progress_bar
from .core.params import BuildParams, TilingParams


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
                         dask=args.dask, dba=args.dba, merge=args.merge)
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
              "with the others, and failed rasters indexed before keep their tiles "
              f"(exit status {EXIT_PARTIAL})", file=sys.stderr)
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


def info(args) -> int:
    from .core.store import read_index_info, require_manifest
    from .core.store.merge_policy import describe_tiers

    print(read_index_info(args.index_dir).describe())
    print(describe_tiers(require_manifest(args.index_dir)))
    return EXIT_OK
