"""`rsir searches list|show|remove`: the standing searches kept in an index folder (core/standing.py)."""
from __future__ import annotations

import sys

from .cli_errors import EXIT_ERROR, EXIT_OK


def list_command(args) -> int:
    """One line a saved search: name, kind, scoring, k, and its new hits file; a damaged one says so."""
    from .core.standing import list_searches

    listings = list_searches(args.index_dir)
    if not listings:
        print(f"no saved searches in {args.index_dir} (save one with `rsir search ... --save-as NAME`)",
              file=sys.stderr)
    for listing in listings:
        if listing.search is None:
            print(f"{listing.name}\tdamaged: {listing.problem}")
            continue
        saved = listing.search
        print(f"{saved.name}\t{saved.kind}, {saved.scoring}, k={saved.k}, saved {saved.saved_at}, "
              f"{len(saved.seen)} raster(s) seen"
              + (f"\tnew hits: {listing.new_hits}" if listing.new_hits else ""))
    return EXIT_OK


def show(args) -> int:
    """A saved search in full; one line, and exit 1, when it is damaged or its model is not the index's."""
    from .core.standing import load_search, model_problem
    from .core.store import require_manifest

    saved = load_search(args.index_dir, args.name)
    problem = model_problem(saved, require_manifest(args.index_dir))
    if problem:
        print(f"rsir: error: saved search '{saved.name}' is refused: {problem}", file=sys.stderr)
        return EXIT_ERROR
    print(f"name: {saved.name}\nkind: {saved.kind} ({saved.scoring}"
          + (", a classifier" if saved.weights is not None else "") + ")")
    print(f"model: {saved.model['name']} (sha256 {saved.model['sha256'][:12]}, {saved.model['embedding_dim']}-d)")
    print(f"ranking: k={saved.k}, NMS IoU {saved.nms_iou:g}, minimum score {saved.min_score}, "
          f"{'DBA vectors where the index has them' if saved.augmented else 'model embeddings'}")
    print(f"saved: {saved.saved_at}; last searched generation {saved.generation}; "
          f"{len(saved.seen)} raster(s) seen; {len(saved.areas)} area(s) left out")
    for example in saved.examples:
        print(f"  {'positive' if example['positive'] else 'negative'}: {example['raster']} "
              f"{', '.join(f'{v:g}' for v in example['bbox'])}" + (f" ({example['crs']})" if example['crs'] else ""))
    return EXIT_OK


def remove(args) -> int:
    from .core.standing import remove_search

    for path in remove_search(args.index_dir, args.name):
        print(f"removed {path}", file=sys.stderr)
    return EXIT_OK
