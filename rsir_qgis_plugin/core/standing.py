"""Standing searches: a search saved by name in the index folder, re-run by every build on what it added.

    INDEX/searches/<name>.json      the saved search (core/standing_file.py): the query vector (a box's
                                    own embedding; Rocchio's), a feedback classifier's weights, k, NMS, the
                                    minimum score, the areas to leave out, the examples, the model's
                                    identity, and the shard keys of the rasters it has seen
    INDEX/searches/<name>.new.gpkg  its hits among the rasters the last build added (layer rsir_hits)

The saved search keeps vectors, not rasters: re-running it needs neither the query raster nor the model,
only the index's stored vectors of the new tiles. "Seen" is kept by raster (the shard key: path, size,
mtime, tiling, model, TTA), not by segment, so compaction (which rewrites every segment) brings nothing
"new", while a raster that changed on disk and was embedded again is searched again.

A search by change example (kind "change") is re-run on the pairs of dates new to it instead of new tiles:
core/standing_change.py; its new hits are places (layer rsir_changes).

A build calls run_standing_searches() after its commit: nothing here can fail or undo the build; a saved
search that cannot run (damaged, another model) is one line in the build's summary.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_bytes_atomic
from .changes_io import CHANGES_LAYER
from .embedder import shared_embedder
from .errors import RsirError, SearchCancelled
from .feedback import example_scores
from .hits_io import HITS_LAYER, write_hits
from .params import SearchParams
from .query_step import box_window, index_reader, model_for, query_areas, read_box
from .ranking import exact_source, rank
from .results import Scorer, SearchResult
from .standing_change import rerun_change_search
from .standing_file import (
    SEARCHES,
    SavedSearch,
    check_name,
    example_record,
    live_keys,
    model_identity,
    new_hits_path,
    read_saved,
    search_path,
    write_new_saved,
)
from .store import IndexReader


@dataclass(frozen=True)
class StandingReport:
    """What a build's re-run of one saved search found: new hits, or why it did not run."""

    name: str
    new_hits: int = 0
    new_rasters: int = 0
    path: str | None = None  # the .new.gpkg written
    problem: str | None = None  # one line: the search was skipped
    layer: str = HITS_LAYER  # the layer of the .new.gpkg: rsir_hits, or rsir_changes for a search by change

    @property
    def headline(self) -> str:
        """'3 new hits for 'solar farms'' (or the line saying it was skipped)."""
        if self.problem:
            return f"standing search '{self.name}' skipped: {self.problem}"
        return f"{self.new_hits} new hit{'' if self.new_hits == 1 else 's'} for '{self.name}'"

    def describe(self) -> str:
        if self.problem:
            return self.headline
        return f"{self.headline} ({self.new_rasters} new raster(s); {self.path})"


@dataclass(frozen=True)
class SearchListing:
    """One file of INDEX/searches for `rsir searches list`: the search, or the line saying it is damaged."""

    name: str
    path: Path
    search: SavedSearch | None
    problem: str | None = None
    new_hits: Path | None = None


def save_search(index_dir: str | Path, name: str, result: SearchResult, params: SearchParams,
                overwrite: bool = False) -> Path:
    """Keep a search's scorer by name; the rasters in the index now count as seen. Returns the file."""
    check_name(name)
    reader = index_reader(index_dir)
    scorer = result.scorer or _box_scorer(reader, result, params)
    examples = [example_record(box) for box in (result.feedback.boxes if result.feedback else ())]
    if not examples and result.query_polygon and result.query_raster:  # a box query: the box, in its raster's CRS
        xs, ys = zip(*result.query_polygon)
        examples = [{"raster": result.query_raster, "bbox": [float(min(xs)), float(min(ys)), float(max(xs)),
                                                             float(max(ys))], "crs": None, "positive": True}]
    saved = SavedSearch(
        name=name, kind="feedback" if result.feedback else ("box" if result.query_polygon else "image"),
        model=model_identity(reader.manifest),
        query=np.asarray(scorer.query, np.float32), k=params.k, nms_iou=params.nms_iou,
        min_score=params.min_score, scoring=result.scoring, weights=scorer.weights, bias=scorer.bias,
        augmented=scorer.augmented, areas=tuple(scorer.areas), examples=examples,
        query_polygon=[[float(x), float(y)] for x, y in result.query_polygon] if result.query_polygon else None,
        query_crs_wkt=result.query_crs_wkt, seen=live_keys(reader),
        saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), generation=int(reader.manifest["generation"]))
    return write_new_saved(reader.index_dir, saved, overwrite)


def load_search(index_dir: str | Path, name: str) -> SavedSearch:
    path = search_path(index_dir, name)
    if not path.is_file():
        raise RsirError(f"{path}: no saved search of that name (`rsir searches list` names them)")
    return read_saved(path)


def list_searches(index_dir: str | Path) -> list[SearchListing]:
    """Every saved search of the index, by name; a damaged one with its line."""
    folder = Path(index_dir) / SEARCHES
    if not folder.is_dir() or folder.is_symlink():
        return []
    listings = []
    for path in sorted(folder.glob("*.json")):
        name = path.name[:-len(".json")]
        hits = folder / f"{name}.new.gpkg"
        try:
            check_name(name)
            listings.append(SearchListing(name, path, read_saved(path), new_hits=hits if hits.is_file() else None))
        except RsirError as exc:
            listings.append(SearchListing(name, path, None, problem=str(exc)))
    return listings


def remove_search(index_dir: str | Path, name: str) -> list[Path]:
    """Delete a saved search and its new hits; returns the files removed."""
    removed = []
    for path in (search_path(index_dir, name), new_hits_path(index_dir, name)):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    if not removed:
        raise RsirError(f"{search_path(index_dir, name)}: no saved search of that name")
    return removed


def model_problem(saved: SavedSearch, manifest: dict) -> str | None:
    """One line when the index's model is not the one the search was saved with, else None."""
    model = manifest["model"]
    if saved.model["sha256"] != model["sha256"]:
        return (f"saved with model '{saved.model['name']}' (sha256 {saved.model['sha256'][:12]}), the index "
                f"now uses '{model['name']}' (sha256 {model['sha256'][:12]}); save the search again")
    return None


def run_standing_searches(index_dir: str | Path, progress: Callable[[float, str], None] | None = None,
                          is_cancelled: Callable[[], bool] | None = None) -> list[StandingReport]:
    """Re-run each saved search on the rasters it has not seen; write their hits; never raises.

    For each search: the live rasters whose shard key it has not seen are ranked by its scorer (k, NMS,
    minimum score and the areas it leaves out as saved), the hits replace searches/<name>.new.gpkg, and
    then the file records every live raster as seen. Nothing new: the search is left alone (no report).
    """
    folder = Path(index_dir) / SEARCHES
    if not folder.is_dir() or folder.is_symlink() or not any(folder.glob("*.json")):
        return []
    reports = []
    try:
        reader = index_reader(index_dir)
        listings = list_searches(index_dir)
    except (RsirError, OSError) as exc:
        return [StandingReport(name="*", problem=f"the index could not be read for them ({exc})")]
    for number, listing in enumerate(listings):
        if progress:
            progress(100.0 * number / len(listings), f"standing search '{listing.name}'")
        if is_cancelled and is_cancelled():
            reports.append(StandingReport(listing.name, problem="the build was cancelled after its commit"))
            continue
        try:
            report = _run_one(reader, listing, is_cancelled)
        except SearchCancelled:
            report = StandingReport(listing.name, problem="the build was cancelled after its commit")
        except (RsirError, OSError, ValueError) as exc:  # a saved search never breaks a build
            report = StandingReport(listing.name, problem=str(exc))
        if report is not None:
            reports.append(report)
    return reports


def _run_one(reader: IndexReader, listing: SearchListing, is_cancelled) -> StandingReport | None:
    if listing.search is None:
        return StandingReport(listing.name, problem=listing.problem)
    saved = listing.search
    problem = model_problem(saved, reader.manifest)
    if problem:
        return StandingReport(saved.name, problem=problem)
    if saved.kind == "change":  # new pairs of dates, not new tiles: core/standing_change.py
        found = rerun_change_search(reader, saved, listing.path, is_cancelled)
        return None if found is None else StandingReport(saved.name, new_hits=found.hits, new_rasters=found.rasters,
                                                         path=str(found.path), layer=CHANGES_LAYER)
    seen = set(saved.seen)
    new = [entry for entry in reader.rasters.values() if entry.shard not in seen]
    if not new:
        return None
    ids = reader.raster_tile_ids([entry.id for entry in new])
    params = SearchParams(k=saved.k, nms_iou=saved.nms_iou, min_score=saved.min_score)
    hits = []
    if len(ids):
        scored = exact_source(reader, ids, lambda vectors: example_scores(vectors, saved.query, saved.weights,
                                                                          saved.bias), saved.augmented)
        hits, _ = rank(reader, scored, params, saved.areas, is_cancelled)
    result = SearchResult(hits=hits, query_polygon=saved.query_polygon, query_crs_wkt=saved.query_crs_wkt,
                          query_raster=saved.examples[0]["raster"] if saved.examples else None,
                          provider="stored vectors", seconds=0.0, scoring=saved.scoring)
    path = new_hits_path(reader.index_dir, saved.name)
    if path.is_symlink():
        raise RsirError(f"{path}: is a symbolic link; rsir writes new hits only as a plain file")
    write_hits(result, path)
    updated = replace(saved, seen=live_keys(reader), generation=int(reader.manifest["generation"]))
    write_bytes_atomic(listing.path, updated.to_bytes())
    return StandingReport(saved.name, new_hits=len(hits), new_rasters=len(new), path=str(path))


def _box_scorer(reader: IndexReader, result: SearchResult, params: SearchParams) -> Scorer:
    """A box query's scorer, its box embedded again as search_box embeds it (the box's own embedding, no
    αQE: the expansion depends on the tiles of the day, a standing search should not), and its area."""
    if not (result.query_raster and result.query_polygon):
        raise RsirError("this search cannot be saved: only a box search or a search by labelled boxes can "
                        "be kept as a standing search")
    xs, ys = zip(*result.query_polygon)
    bbox = (min(xs), min(ys), max(xs), max(ys))
    model = model_for(reader, params)
    source, window = box_window(reader, model, result.query_raster, bbox, None)
    tile = read_box(source, window, model.contract.input_size, bbox)
    embedder = shared_embedder(model, params.device)
    query = (embedder.embed_tta if params.tta else embedder.embed)(tile[None])[0]
    areas = query_areas(source, [window]) if params.exclude_query_overlap else []
    return Scorer(query=np.asarray(query, np.float32), areas=tuple(areas))


