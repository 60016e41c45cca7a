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

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .embedder import Embedder
from .errors import BuildCancelled, BuildFailed, IndexStoreError, RasterError, RasterMissingError
from .jobs import Job, JobCounts, embed_jobs, resumable
from .model import ModelInfo, find_model, read_model
from .params import BuildParams, TilingParams
from .raster import RasterSource, describe, resolve_raster_path
from .store import (LiveRaster, Shard, ShardError, WriterLock, check_model, choose_kind, commit_changes,
                    live_rasters, read_manifest, shard_path, verify_generation, write_generation)
from .store.generation import shard_identities
from .store.files import make_index_folder, os_error_message
from .store.manifest import model_not_found
from .store.repair import collect_shards
from .tiling import resolve_grid, tile_windows

Progress = Callable[[float, str], None]


@dataclass
class BuildSummary:
    """What a build did, for the user."""

    index_dir: str
    tiles_indexed: int = 0  # embedded by this build
    tiles_skipped: int = 0  # nodata or empty tiles met by this build
    tiles_non_finite: int = 0  # tiles whose embedding was NaN/inf: never stored
    tiles_total: int = 0  # in the index after this build
    rasters_indexed: int = 0
    rasters_unchanged: int = 0
    rasters_resumed: int = 0  # finished by an earlier, interrupted build
    rasters_removed: int = 0  # gone from disk
    rasters_kept: int = 0  # failed this time; their previous tiles stay in the index
    shards_recomputed: int = 0  # shards that failed verification and were embedded again
    repaired: str = ""  # damage found in the live index, which this build rewrote from the shards
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    provider: str = ""
    index_kind: str = ""
    segments: int = 0

    @property
    def tiles_per_second(self) -> float:
        return self.tiles_indexed / self.embed_seconds if self.embed_seconds > 0 else 0.0

    @property
    def rasters_succeeded(self) -> int:
        return self.rasters_indexed + self.rasters_unchanged + self.rasters_resumed

    def describe(self) -> str:
        text = (f"{self.tiles_total} tiles in {self.index_dir} ({self.index_kind}); this build embedded "
                f"{self.tiles_indexed} tiles from {self.rasters_indexed} raster(s)")
        if self.tiles_indexed:
            text += f" at {self.tiles_per_second:.1f} tiles/s on {self.provider}"
        text += (f", skipped {self.tiles_skipped} nodata/empty tiles; {self.rasters_unchanged} raster(s) "
                 f"unchanged, {self.rasters_resumed} resumed, {self.rasters_removed} removed (gone from disk); "
                 f"{self.seconds:.1f} s in all")
        if self.tiles_non_finite:
            text += f"; {self.tiles_non_finite} tile(s) dropped: the model gave NaN/infinite embeddings"
        if self.shards_recomputed:
            text += f"; {self.shards_recomputed} damaged shard(s) embedded again"
        if self.repaired:
            text += f"; the index was damaged ({self.repaired}) and has been rewritten"
        if self.failed:
            text += f"; {len(self.failed)} raster(s) failed:" + "".join(
                f"\n  {path}: {reason}" for path, reason in self.failed)
        return text


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
        previous = _live_manifest(index_dir, params.force)
        if previous is not None:
            check_model(previous, model, index_dir)
            summary.repaired = verify_generation(index_dir, previous) or ""
        previous_rasters = _previous_rasters(index_dir, previous, model, summary)
        wanted = _wanted_rasters(params, previous_rasters, summary)
        if not wanted and previous is None:
            if summary.failed:
                raise BuildFailed(_failure_text(index_dir, summary))
            raise IndexStoreError(f"{index_dir}: no raster to index; give the rasters to add")
        # The probe runs the model on one tile: a model that fails at run time is reported before
        # any raster is read.
        embedder = Embedder(model, params.device) if wanted else None
        rewrite = params.compact or bool(summary.repaired) or _kind_changes(previous, params.approximate)
        plan = _Plan(index_dir, model, params, previous_rasters, summary, rewrite)
        for path, tiling in wanted.items():
            plan.add(path, tiling)
            if is_cancelled():
                raise BuildCancelled(f"{index_dir}: build cancelled; the previous index is unchanged")

        if plan.jobs:
            summary.provider = embedder.describe() + (" with 4-rotation TTA" if params.tta else "")
            counts = JobCounts()
            embed_started = time.perf_counter()
            if params.dask:
                from .distributed import embed_on_dask

                finished = embed_on_dask(plan.jobs, model, params, index_dir, counts, progress, is_cancelled)
            else:
                finished = embed_jobs(plan.jobs, embedder, params.tta, params.batch_size, index_dir, counts,
                                      progress, is_cancelled)
            try:
                for job, shard, error in finished:
                    if error is not None:
                        plan.fail(job.source.path, error)
                        continue
                    if not params.dask:  # Dask workers save their shards themselves, on the shared path
                        shard.save(shard_path(index_dir, job.key))
                    plan.shards[job.key] = shard
                    summary.rasters_indexed += 1
            except OSError as exc:
                raise os_error_message(exc, index_dir, "cannot save embeddings") from None
            summary.embed_seconds = time.perf_counter() - embed_started
            summary.tiles_indexed, summary.tiles_skipped = counts.indexed, counts.skipped
            summary.tiles_non_finite = counts.non_finite
            if params.dask:  # the client's own session only checked the model: the workers embedded
                summary.provider = ("Dask workers: " + ", ".join(sorted(counts.where) or ["none finished"])
                                    + (" with 4-rotation TTA" if params.tta else ""))

        if summary.failed and not summary.rasters_succeeded:
            raise BuildFailed(_failure_text(index_dir, summary))
        manifest = _commit(index_dir, previous, model, params, plan, progress)
    summary.tiles_total = manifest["tile_count"]
    summary.index_kind = manifest["index_kind"]
    summary.segments = len(manifest["segments"])
    summary.seconds = time.perf_counter() - started
    progress(100.0, "done")
    return summary


def _commit(index_dir: Path, previous: dict | None, model: ModelInfo, params: BuildParams, plan: "_Plan",
            progress: Progress) -> dict:
    """Write what changed: a segment of the new shards and tombstones, or (rewrite) everything as one."""
    live_keys = plan.live_keys | set(plan.shards)
    # Only the shards of rasters this build replaced or dropped are deleted: never one it knows
    # nothing of (after a lost manifest, --force with one raster leaves the others' to `index repair`).
    dropped = frozenset(plan.previous_keys - live_keys)
    if plan.rewrite or previous is None:
        progress(99.0, "writing the index")
        return write_generation(index_dir, plan.shards, model, params.approximate, previous,
                                drop_shards=dropped)
    retired = [raster for raster in plan.previous_rasters.values() if raster.key not in live_keys]
    if not plan.shards and not retired:
        return previous  # nothing changed
    progress(99.0, "writing the index")
    return commit_changes(index_dir, previous, model, plan.shards, retired, live_keys, params.approximate,
                          drop_shards=dropped)


def _kind_changes(previous: dict | None, approximate: bool | None) -> bool:
    """An explicit --exact/--approximate that the live segments do not follow: rewrite them."""
    if previous is None or approximate is None:
        return False
    return any(segment["kind"] != choose_kind(segment["tiles"], approximate) for segment in previous["segments"])


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


def _wanted_rasters(params: BuildParams, previous_rasters: dict, summary: BuildSummary
                    ) -> dict[str, TilingParams]:
    """Every raster this build covers: the index's own (less those gone from disk) and those given."""
    wanted: dict[str, TilingParams] = {}
    for path, raster in previous_rasters.items():
        if _gone_from_disk(path):
            summary.rasters_removed += 1
        else:
            wanted[path] = TilingParams(**{**raster.tiling, "bands": _bands(raster.tiling)})
    for raster in params.rasters:
        try:
            path = resolve_raster_path(raster)
        except RasterError as exc:
            summary.failed.append((exc.path, exc.problem))
            continue
        wanted[path] = params.tiling
    return wanted


def _gone_from_disk(path: str) -> bool:
    """A raster file deleted from a folder that is still there.

    A folder that vanished too is more likely a network share or drive that is not mounted now:
    its rasters fail this time and keep their tiles (and shards).
    """
    return not os.path.lexists(path) and Path(path).parent.is_dir()


def _missing_problem(path: str, exc: RasterError) -> tuple[str, bool]:
    """(the reason to report, whether the raster is gone) for a raster that could not be described."""
    if not isinstance(exc, RasterMissingError):
        return exc.problem, False
    if _gone_from_disk(path):
        return exc.problem, True
    return f"its folder {Path(path).parent} is not there (a share or drive that is not mounted?)", False


class _Plan:
    """Decides for each wanted raster: keep it as it is, embed it (a job), or keep its old tiles.

    Incrementally, an unchanged raster is not touched (its tiles live in a segment); when the
    index is rewritten (`rewrite`: compaction, damage, a new index kind) every live raster's shard
    is read and verified, and a shard that fails verification is embedded again.
    """

    def __init__(self, index_dir: Path, model: ModelInfo, params: BuildParams,
                 previous_rasters: dict[str, LiveRaster], summary: BuildSummary, rewrite: bool):
        self.index_dir, self.model, self.params = index_dir, model, params
        self.previous_rasters, self.summary, self.rewrite = previous_rasters, summary, rewrite
        self.previous_keys = {raster.key for raster in previous_rasters.values()}
        self.shards: dict[str, Shard] = {}  # to write: new ones, or (rewrite) all
        self.live_keys: set[str] = set()  # kept as they are in their segments
        self.jobs: list[Job] = []

    def add(self, path: str, tiling: TilingParams) -> None:
        model, dim = self.model, self.model.contract.embedding_dim
        try:
            source = describe(path, tiling.bands, model.contract.bands)
            grid = resolve_grid(source, tiling, model.contract.input_size)
        except RasterError as exc:
            self.fail(path, *_missing_problem(path, exc))
            return
        key = shard_key(source, tiling, model, self.params.tta)
        if key in self.previous_keys and not self.rewrite:
            self.live_keys.add(key)
            self.summary.rasters_unchanged += 1
            return
        path_of_shard = shard_path(self.index_dir, key)
        if path_of_shard.exists():
            try:
                self.shards[key] = Shard.load(path_of_shard, dim)
            except ShardError:
                self.summary.shards_recomputed += 1
                if path_of_shard.is_file():
                    path_of_shard.unlink()
            else:
                if key in self.previous_keys:
                    self.summary.rasters_unchanged += 1
                else:
                    self.summary.rasters_resumed += 1
                return
        extra = {"model_sha256": model.sha256, "tta": self.params.tta}
        self.jobs.append(resumable(Job(source, tiling, grid, key, tile_windows(source.width, source.height, grid),
                                       extra), self.index_dir, dim))

    def fail(self, path: str, problem: str, gone: bool = False) -> None:
        """Report a raster that failed; an indexed one keeps its previous tiles unless it is gone."""
        previous = self.previous_rasters.get(path)
        if previous is not None and not gone:
            if not self.rewrite:
                self.live_keys.add(previous.key)
                self.summary.rasters_kept += 1
                problem += f"; its {previous.tile_count} previously indexed tiles are kept"
            else:
                try:
                    shard = Shard.load(shard_path(self.index_dir, previous.key), self.model.contract.embedding_dim)
                except ShardError as exc:
                    problem += f"; its previous tiles are lost too ({exc})"
                else:
                    self.shards[previous.key] = shard
                    self.summary.rasters_kept += 1
                    problem += f"; its {len(shard.vectors)} previously indexed tiles are kept"
        self.summary.failed.append((path, problem))


def _failure_text(index_dir: Path, summary: BuildSummary) -> str:
    return (f"{index_dir}: no raster could be indexed, nothing was changed (the previous index, if any, "
            f"is still in use):" + "".join(f"\n  {path}: {reason}" for path, reason in summary.failed))


def shard_key(source: RasterSource, tiling: TilingParams, model: ModelInfo, tta: bool) -> str:
    """Everything that changes a raster's embeddings: the file, the tiling, the model, TTA."""
    fp = source.fingerprint
    return _key(fp.path, fp.size, fp.mtime_ns, tiling.as_record(), source.bands, model.sha256, tta)


def _key(path: str, size: int, mtime_ns: int, tiling_record: dict, bands, model_sha256: str,
         tta: bool) -> str:
    identity = json.dumps([path, size, mtime_ns, tiling_record, list(bands), model_sha256, tta],
                          sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def _row_mismatch(index_dir: Path, manifest: dict, model: ModelInfo) -> str | None:
    """The first catalog row whose shard key is not the hash of the row's own raster, tiling and model.

    A bit flipped in a row's path (or size, tiling, key...) would otherwise be acted on: the raster
    taken for one deleted from disk and dropped with its shard. Two hashes a row: checked on every build,
    at every segment size.
    """
    for catalog, raster_id, path, key, size, mtime_ns, tiling, bands in shard_identities(index_dir,
                                                                                          manifest):
        try:
            made = {_key(path, size, mtime_ns, json.loads(tiling), json.loads(bands), model.sha256, tta)
                    for tta in (False, True)}
        except (ValueError, TypeError, RecursionError):
            made = set()
        if key not in made:
            return (f"{catalog}: the row of raster {raster_id} ({str(path)[-80:]}) does not match its "
                    "shard key")
    return None


def _bands(tiling_record: dict):
    return tuple(tiling_record["bands"]) if tiling_record.get("bands") else None


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
