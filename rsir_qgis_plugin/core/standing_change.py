"""Standing searches by change example: a search by change saved by name (INDEX/searches/<name>.json, kind
"change") and its re-run, after a build, on the pairs of dates that are new to it.

What is new, kept simple:
  - a raster the search has not seen (indexed since it was saved, or changed on disk and embedded again) is
    taken as the later date of every raster the search has seen that it overlaps on the ground. Each such
    pair (before: the seen raster, whose indexed tiles are the places; after: the new raster) is compared
    as `rsir change` compares one: the after date read on the before tiles and embedded, or reused where
    the new raster's own tiles lie exactly on them, and kept in INDEX/pairs. Rasters new in the same build
    are not paired with each other: nothing says which is the later date (compare them with `rsir change`;
    the next build ranks that stored pair);
  - unless the search was saved ranking only its own pairs, every pair stored in INDEX/pairs whose key it
    has not seen (a pair compared since it was saved, or one whose raster changed).
The places of these pairs are scored as the saved search scored its own (the examples' change direction or
their classifier, damped by the examples' size of change; core/change_rank.change_likeness), the examples'
places left out, k, NMS and minimum score as saved. The hits replace searches/<name>.new.gpkg (layer
rsir_changes); the file then records the live rasters and the pairs ranked as seen. A new raster that
forms no pair is recorded as seen all the same, so that a raster indexed later pairs with it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .atomic import write_bytes_atomic
from .change_pairs import Pair, footprints_overlap
from .change_params import ChangeParams
from .change_rank import rank_by_scorer
from .change_results import ChangeResult, ChangeScorer
from .changes_io import write_changes
from .embedder import Embedder, shared_embedder
from .errors import RasterError, RsirError, SearchCancelled
from .pair_places import PairPlaces, other_stored_places, pair_places
from .query_step import index_reader, model_for
from .raster import describe
from .standing_file import (
    SavedSearch,
    check_name,
    example_record,
    live_keys,
    model_identity,
    new_hits_path,
    write_new_saved,
)
from .store import IndexReader


@dataclass(frozen=True)
class ChangeRerun:
    """What a re-run of a saved search by change found."""

    hits: int
    rasters: int  # rasters it had not seen
    path: Path  # the .new.gpkg written


def save_change_search(index_dir: str | Path, name: str, result: ChangeResult, params: ChangeParams,
                       overwrite: bool = False) -> Path:
    """Keep a search by change example by name; the index's rasters and the pairs it ranked count as seen."""
    check_name(name)
    scorer = result.scorer
    if scorer is None:
        raise RsirError("only a search by change example can be saved as a standing search (hot spots rank by "
                        "the size of a change alone, with nothing to look for)")
    reader = index_reader(index_dir)
    saved = SavedSearch(
        name=name, kind="change", model=model_identity(reader.manifest), query=scorer.query, k=params.k,
        nms_iou=params.nms_iou, min_score=params.min_score, scoring=result.scoring, weights=scorer.weights,
        bias=scorer.bias, areas=tuple(scorer.areas),
        examples=[example_record(box) for box in (result.examples.boxes if result.examples else ())],
        seen=live_keys(reader), saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        generation=int(reader.manifest["generation"]),
        change={"size": float(scorer.size), "pairs": sorted(set(scorer.pairs)), "other_pairs": params.other_pairs,
                "min_coverage": float(params.min_coverage)})
    return write_new_saved(reader.index_dir, saved, overwrite)


def rerun_change_search(reader: IndexReader, saved: SavedSearch, path: Path,
                        is_cancelled: Callable[[], bool] | None = None) -> ChangeRerun | None:
    """Rank the pairs new to a saved search by change (module docstring); None when there is none."""
    settings = saved.change or {}
    params = ChangeParams(k=saved.k, nms_iou=saved.nms_iou, min_score=saved.min_score,
                          min_coverage=settings["min_coverage"], other_pairs=settings["other_pairs"])
    seen, seen_pairs = set(saved.seen), set(settings["pairs"])
    live = list(reader.rasters.values())
    new = [entry for entry in live if entry.shard not in seen]
    old = [entry for entry in live if entry.shard in seen and entry.tile_count > 0]
    later = [(before, after) for after in new for before in old if footprints_overlap(before, after)]
    if not later and not params.other_pairs:
        return _seen_only(saved, path, reader) if new else None
    model = model_for(reader, params.ranking())
    sessions: list[Embedder] = []

    def session() -> Embedder:  # made when a pair must be embedded (reused and stored ones need none)
        if not sessions:
            sessions.append(shared_embedder(model, params.device))
        return sessions[0]

    places: list[PairPlaces] = []
    for before, after in later:
        if is_cancelled and is_cancelled():
            raise SearchCancelled("the re-run of a saved search by change was cancelled")
        try:
            source = describe(after.path, tuple(after.bands), model.contract.bands)
        except RasterError:
            continue  # its file is gone (an unmounted share): the pair is made when it is back
        found, _ = pair_places(reader, model, Pair(before=before, after=source, after_entry=after),
                               params.min_coverage, params.batch_size, session, None, is_cancelled)
        places.append(found)
    if params.other_pairs:
        places += other_stored_places(reader, model, places)[0]
    places = [p for p in places if p.key not in seen_pairs]
    if not places:
        return _seen_only(saved, path, reader) if new else None
    scorer = ChangeScorer(query=saved.query, weights=saved.weights, bias=saved.bias, size=settings["size"],
                          areas=saved.areas)
    result = rank_by_scorer(reader, model, places, scorer, params, is_cancelled)
    hits_path = new_hits_path(reader.index_dir, saved.name)
    if hits_path.is_symlink():
        raise RsirError(f"{hits_path}: is a symbolic link; rsir writes new hits only as a plain file")
    write_changes(result, hits_path)
    change = dict(settings, pairs=sorted(seen_pairs | {p.key for p in places}))
    updated = replace(saved, seen=live_keys(reader), generation=int(reader.manifest["generation"]), change=change)
    write_bytes_atomic(path, updated.to_bytes())
    return ChangeRerun(hits=len(result.hits), rasters=len(new), path=hits_path)


def _seen_only(saved: SavedSearch, path: Path, reader: IndexReader) -> None:
    """New rasters that formed no new pair: recorded as seen (a raster indexed later may pair with them)."""
    updated = replace(saved, seen=live_keys(reader), generation=int(reader.manifest["generation"]))
    write_bytes_atomic(path, updated.to_bytes())
    return None
