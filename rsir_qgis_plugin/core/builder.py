"""Building and updating an index: incremental, resumable after a kill, cancellable, never half-written.

Each raster is embedded into a shard file that is written atomically when the raster is done;
the commit (a new segment of what was embedded and tombstones for what it replaced, then the
manifest) happens once at the end. So a build killed at any moment leaves the previous index in
use, and the next build reuses every shard that was finished.

Nothing indexed is lost to a bad input: a raster that fails this time (unreadable now, bad
bands, a broken file) keeps the tiles it had, only a raster gone from disk is dropped, and a
build in which every raster fails commits nothing.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from .build_plan import BuildPlan, shard_key_of, wanted_rasters
from .build_summary import BuildSummary
from .embedder import Embedder
from .errors import BuildCancelled, BuildFailed, IndexStoreError
from .jobs import Job, JobCounts, embed_jobs
from .model import ModelInfo, find_model, read_model
from .params import BuildParams, TilingParams
from .store import (
    DbaRun,
    LiveRaster,
    Shard,
    WriterLock,
    check_model,
    choose_kind,
    commit_changes,
    dba_setting,
    live_rasters,
    read_manifest,
    verify_generation,
    write_generation,
)
from .store.files import make_index_folder, os_error_message
from .store.generation import shard_identities
from .store.manifest import model_not_found
from .store.repair import collect_shards

Progress = Callable[[float, str], None]
Finished = Iterator[tuple[Job, Shard | None, str | None]]  # (job, its shard, or why it failed)


def build_index(params: BuildParams, progress: Progress | None = None,
                is_cancelled: Callable[[], bool] | None = None) -> BuildSummary:
    """Add the given rasters to the index (creating it), refresh changed ones, drop deleted ones."""
    started = time.perf_counter()
    progress = progress or (lambda percent, message: None)
    is_cancelled = is_cancelled or (lambda: False)
    index_dir = Path(params.index_dir).expanduser().resolve()
    make_index_folder(index_dir)
    model = _model_for_build(params.model_path, index_dir)
    summary = BuildSummary(index_dir=str(index_dir))

    with WriterLock(index_dir):
        previous = _checked_previous(index_dir, model, params.force, summary)
        previous_rasters = _previous_rasters(index_dir, previous, model, summary)
        wanted = wanted_rasters(params, previous_rasters, summary)
        _require_a_raster(index_dir, wanted, previous, summary)
        # The probe runs the model on one tile: a model that fails at run time is reported before
        # any raster is read.
        embedder = Embedder(model, params.device) if wanted else None
        dba = _dba_wanted(params.dba, previous)
        rewrite = (params.compact or bool(summary.repaired) or _kind_changes(previous, params.approximate)
                   or _dba_changes(previous, dba))
        plan = BuildPlan(index_dir, model, params, previous_rasters, summary, rewrite)
        _plan_rasters(plan, wanted, is_cancelled)
        if plan.jobs:
            _embed(plan, embedder, progress, is_cancelled)
        if summary.failed and not summary.rasters_succeeded:
            raise BuildFailed(_failure_text(index_dir, summary))
        dba_run = DbaRun(index_dir, model.contract.embedding_dim, progress=progress,
                         is_cancelled=is_cancelled) if dba else None
        manifest = _commit(index_dir, previous, model, params, plan, progress, dba_run)
        summary.standing = _standing_searches(index_dir, progress, is_cancelled)
        if params.merge:  # after the saved searches: they look for this build's own new segment
            manifest = _merge(index_dir, manifest, model, params, summary, progress, is_cancelled)
    _describe_index(summary, manifest, previous)
    summary.seconds = time.perf_counter() - started
    progress(100.0, "done")
    return summary


def _standing_searches(index_dir: Path, progress: Progress, is_cancelled) -> list:
    """The saved searches re-run on what this build added, after its commit: whatever happens to them,
    the build stands (its index is already committed), so any failure is a line of the summary."""
    from .standing import StandingReport, run_standing_searches

    try:
        return run_standing_searches(index_dir, lambda percent, message: progress(99.0, message), is_cancelled)
    except Exception as exc:  # noqa: BLE001 - after the commit nothing may fail the build; the user is told
        return [StandingReport(name="*", problem=f"the saved searches could not run ({exc})")]


def _merge(index_dir: Path, manifest: dict, model: ModelInfo, params: BuildParams, summary: BuildSummary,
           progress: Progress, is_cancelled) -> dict:
    """Segments of similar size merged (store/merge.py), each merge its own commit: the build is committed
    already, so a merge that fails leaves the index as the last commit left it and is a line of the summary."""
    from .store.merge import merge_tiers

    try:
        manifest, report = merge_tiers(index_dir, manifest, model, params.approximate, progress, is_cancelled)
        summary.merged = report.describe()
    except (IndexStoreError, OSError) as exc:
        summary.merged = f"merging segments stopped ({exc}); the index is whole, the next build merges again"
        manifest = read_manifest(index_dir) or manifest
    return manifest


def _checked_previous(index_dir: Path, model: ModelInfo, force: bool, summary: BuildSummary) -> dict | None:
    """The live manifest (None for a new index), built with this model; damage found in its files is
    noted in the summary (`repaired`), for this build to rewrite."""
    previous = _live_manifest(index_dir, force)
    if previous is not None:
        check_model(previous, model, index_dir)
        summary.repaired = verify_generation(index_dir, previous) or ""
    return previous


def _require_a_raster(index_dir: Path, wanted: dict[str, TilingParams], previous: dict | None,
                      summary: BuildSummary) -> None:
    """A new index needs a raster to index: refuse a build with none, or with only rasters that failed."""
    if not wanted and previous is None:
        if summary.failed:
            raise BuildFailed(_failure_text(index_dir, summary))
        raise IndexStoreError(f"{index_dir}: no raster to index; give the rasters to add")


def _plan_rasters(plan: BuildPlan, wanted: dict[str, TilingParams], is_cancelled: Callable[[], bool]) -> None:
    """Decide for each wanted raster what the build does with it; a cancel is honoured between rasters."""
    for path, tiling in wanted.items():
        plan.add(path, tiling)
        if is_cancelled():
            raise BuildCancelled(f"{plan.index_dir}: build cancelled; the previous index is unchanged")


def _embed(plan: BuildPlan, embedder: Embedder, progress: Progress, is_cancelled: Callable[[], bool]) -> None:
    """Run the plan's jobs, keep each finished shard in the plan, and count what was embedded."""
    params, summary = plan.params, plan.summary
    summary.provider = embedder.describe() + (" with 4-rotation TTA" if params.tta else "")
    counts = JobCounts()
    embed_started = time.perf_counter()
    _keep_finished(plan, plan.blocks.finished(_run_jobs(plan, embedder, counts, progress, is_cancelled),
                                              save=not params.dask))
    summary.embed_seconds = time.perf_counter() - embed_started
    summary.tiles_indexed, summary.tiles_skipped = counts.indexed, counts.skipped
    summary.tiles_non_finite = counts.non_finite
    if params.dask:  # the client's own session only checked the model: the workers embedded
        summary.provider = ("Dask workers: " + ", ".join(sorted(counts.where) or ["none finished"])
                            + (" with 4-rotation TTA" if params.tta else ""))


def _run_jobs(plan: BuildPlan, embedder: Embedder, counts: JobCounts, progress: Progress,
              is_cancelled: Callable[[], bool]) -> Finished:
    """The jobs run here, or on a Dask cluster with --dask; each yielded as it finishes."""
    params = plan.params
    if params.dask:
        from .distributed import embed_on_dask

        return embed_on_dask(plan.jobs, plan.model, params, plan.index_dir, counts, progress, is_cancelled)
    return embed_jobs(plan.jobs, embedder, params.tta, params.batch_size, plan.index_dir, counts, progress,
                      is_cancelled)


def _keep_finished(plan: BuildPlan, finished: Finished) -> None:
    """Add each finished raster's shard (saved by plan.blocks) to the plan; a raster that failed is
    reported and keeps its previous tiles."""
    try:
        for job, shard, error in finished:
            if error is not None:
                plan.fail(job.source.path, error)
                continue
            plan.shards[job.key] = shard
            plan.summary.rasters_indexed += 1
    except OSError as exc:
        raise os_error_message(exc, plan.index_dir, "cannot save embeddings") from None


def _describe_index(summary: BuildSummary, manifest: dict, previous: dict | None) -> None:
    """The index after the build, in the summary: its tiles, its kind, its segments, the time DBA took."""
    before = {segment.get("uid") for segment in (previous or {}).get("segments", [])}
    summary.dba_seconds = sum(segment["dba"].get("seconds", 0.0) for segment in manifest["segments"]
                              if segment.get("dba") and segment.get("uid") not in before)
    summary.tiles_total = manifest["tile_count"]
    summary.index_kind = manifest["index_kind"]
    summary.segments = len(manifest["segments"])


def _commit(index_dir: Path, previous: dict | None, model: ModelInfo, params: BuildParams, plan: BuildPlan,
            progress: Progress, dba: DbaRun | None) -> dict:
    """Write what changed: a segment of the new shards and tombstones, or (rewrite) everything as one.
    With `dba` the new segment gets its DBA search vectors."""
    live_keys = plan.live_keys | set(plan.shards)
    # Only the shards of rasters this build replaced or dropped are deleted: never one it knows
    # nothing of (after a lost manifest, --force with one raster leaves the others' to `index repair`).
    dropped = frozenset(plan.previous_keys - live_keys)
    if plan.rewrite or previous is None:
        progress(98.0 if dba else 99.0, "writing the index")
        return write_generation(index_dir, plan.shards, model, params.approximate, previous,
                                drop_shards=dropped, dba=dba)
    retired = [raster for raster in plan.previous_rasters.values() if raster.key not in live_keys]
    if not plan.shards and not retired:
        return previous  # nothing changed
    progress(98.0 if dba and plan.shards else 99.0, "writing the index")
    return commit_changes(index_dir, previous, model, plan.shards, retired, live_keys, params.approximate,
                          drop_shards=dropped, dba=dba)


def _dba_wanted(asked: bool | None, previous: dict | None) -> bool:
    """Whether the index gets DBA search vectors: as asked, else as the index has (a new index: not)."""
    if asked is not None:
        return asked
    return bool(previous and previous.get("dba"))


def _dba_changes(previous: dict | None, dba: bool) -> bool:
    """DBA turned on or off, another DBA setting, or a segment without search vectors in an index with DBA
    (added by an rsir before DBA): the index is rewritten so that all its segments search alike."""
    if previous is None:
        return False
    if not dba:
        return bool(previous.get("dba")) or any(segment.get("search") for segment in previous["segments"])
    recorded = previous.get("dba") or {}
    return (any(recorded.get(key) != value for key, value in dba_setting().items())
            or not all(segment.get("search") for segment in previous["segments"]))


def _kind_changes(previous: dict | None, approximate: bool | None) -> bool:
    """An explicit --exact/--approximate that the live segments do not follow: rewrite them."""
    if previous is None or approximate is None:
        return False
    return any(segment["kind"] != choose_kind(segment["tiles"], approximate)
               for segment in previous["segments"])


def _model_for_build(model_path: Path | None, index_dir: Path) -> ModelInfo:
    """The model given; else the one the index was built with (where it still is), else the bundled one."""
    if model_path is not None:
        return read_model(model_path)
    try:
        manifest = read_manifest(index_dir)
    except IndexStoreError:
        manifest = None  # reported under the lock, with the way to recover
    if manifest is not None:
        model = find_model(manifest["model"]["sha256"], manifest["model"].get("path"))
        if model is not None:
            return model
        raise model_not_found(index_dir, manifest)  # not the bundled default: that would be another model
    return read_model(None)


def _live_manifest(index_dir: Path, force: bool) -> dict | None:
    """The live manifest; with `force`, None in place of a missing or damaged one (shards are reused)."""
    try:
        return read_manifest(index_dir)
    except IndexStoreError:
        if force:
            return None
        raise


def _failure_text(index_dir: Path, summary: BuildSummary) -> str:
    return (f"{index_dir}: no raster could be indexed, nothing was changed (the previous index, if any, "
            f"is still in use):" + "".join(f"\n  {path}: {reason}" for path, reason in summary.failed))


def _row_mismatch(index_dir: Path, manifest: dict, model: ModelInfo) -> str | None:
    """The first catalog row whose shard key is not the hash of the row's own raster, tiling and model.

    A bit flipped in a row's path (or size, tiling, key...) would otherwise be acted on: the raster
    taken for one deleted from disk and dropped with its shard. Two hashes a row: checked on every build,
    at every segment size.
    """
    for catalog, raster_id, path, key, size, mtime_ns, tiling, bands in shard_identities(index_dir,
                                                                                          manifest):
        try:
            tiling_record, band_list = json.loads(tiling), json.loads(bands)
            made = {shard_key_of(path, size, mtime_ns, tiling_record, band_list, model.sha256, tta)
                    for tta in (False, True)}
        except (ValueError, TypeError, RecursionError):
            made = set()
        if key not in made:
            return (f"{catalog}: the row of raster {raster_id} ({str(path)[-80:]}) does not match its "
                    "shard key")
    return None


def _previous_rasters(index_dir: Path, manifest: dict | None, model: ModelInfo,
                      summary: BuildSummary) -> dict[str, LiveRaster]:
    """path -> LiveRaster for every raster of the live index.

    From the catalogs when the index is whole; where it is damaged (a file that fails its checksum,
    a catalog row that does not match its shard key), from the shards on disk that verify, and
    the index is rewritten from them: a damaged catalog's rows are never acted on (a flipped bit
    in a path would drop that raster; another index's catalog would index its rasters here).
    """
    if manifest is None:
        return {}
    if not summary.repaired:
        try:
            rasters = live_rasters(index_dir, manifest)
        except (IndexStoreError, sqlite3.DatabaseError, ValueError, TypeError) as exc:
            summary.repaired = str(exc).split("; run `", 1)[0]  # damage this build repairs: no advice
        else:
            summary.repaired = _row_mismatch(index_dir, manifest, model) or ""
            if not summary.repaired:
                return rasters
    return {shard.record["path"]: LiveRaster(shard.record["path"], key, shard.record["tiling"], "", 0, 0,
                                             len(shard.vectors))
            for key, shard in collect_shards(index_dir, model).chosen.items()}
