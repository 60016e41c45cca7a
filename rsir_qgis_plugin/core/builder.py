"""Building and updating an index: incremental, resumable after a kill, cancellable, never half-written.

Each raster is embedded into a shard file that is written atomically when the raster is done;
the commit (a new catalog + FAISS generation, then the manifest) happens once at the end. So a
build killed at any moment leaves the previous index in use, and the next build reuses every
shard that was finished.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .embedder import Embedder
from .errors import BuildCancelled, RasterError
from .model import ModelInfo, read_model
from .params import BuildParams, TilingParams
from .pipeline import prefetch
from .raster import RasterSource, describe, open_dataset
from .store import Shard, WriterLock, check_model, choose_kind, open_catalog, read_manifest, write_generation
from .tiling import Grid, read_tiles, resolve_grid, tile_windows, window_bounds, window_corners

Progress = Callable[[float, str], None]


@dataclass
class BuildSummary:
    """What a build did, for the user."""

    index_dir: str
    tiles_indexed: int = 0  # embedded by this build
    tiles_skipped: int = 0  # nodata or empty tiles met by this build
    tiles_total: int = 0  # in the index after this build
    rasters_indexed: int = 0
    rasters_unchanged: int = 0
    rasters_resumed: int = 0  # finished by an earlier, interrupted build
    rasters_removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    provider: str = ""
    index_kind: str = ""

    @property
    def tiles_per_second(self) -> float:
        return self.tiles_indexed / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def describe(self) -> str:
        text = (f"{self.tiles_total} tiles in {self.index_dir} ({self.index_kind}); this build embedded "
                f"{self.tiles_indexed} tiles from {self.rasters_indexed} raster(s)")
        if self.tiles_indexed:
            text += f" at {self.tiles_per_second:.1f} tiles/s on {self.provider}"
        text += (f", skipped {self.tiles_skipped} nodata/empty tiles; {self.rasters_unchanged} raster(s) "
                 f"unchanged, {self.rasters_resumed} resumed, {self.rasters_removed} removed; "
                 f"{self.seconds:.1f} s in all")
        if self.failed:
            text += f"; {len(self.failed)} raster(s) failed:" + "".join(
                f"\n  {path}: {reason}" for path, reason in self.failed)
        return text


CHECKPOINT_TILES = 2048  # a raster's partial embeddings are saved this often (in windows read)


@dataclass
class _Job:
    """One raster to embed, from window `start` on (after a checkpoint of an interrupted build)."""

    source: RasterSource
    tiling: TilingParams
    grid: Grid
    key: str
    windows: list
    start: int = 0
    done: Shard | None = None  # what the checkpoint holds


@dataclass
class _Accumulator:
    """The embeddings of the raster being embedded, so far."""

    job: _Job
    vectors: list = field(default_factory=list)
    windows: list = field(default_factory=list)
    skipped: int = 0
    read: int = 0  # windows read since `job.start`
    checkpointed: int = 0

    @classmethod
    def start(cls, job: _Job) -> "_Accumulator":
        if job.done is None:
            return cls(job)
        done = job.done
        return cls(job, vectors=[done.vectors], windows=[tuple(w) for w in done.windows.tolist()],
                   skipped=done.record["skipped"])


def build_index(params: BuildParams, progress: Progress | None = None,
                is_cancelled: Callable[[], bool] | None = None) -> BuildSummary:
    """Add the given rasters to the index (creating it), refresh changed ones, drop deleted ones."""
    started = time.perf_counter()
    progress = progress or (lambda percent, message: None)
    is_cancelled = is_cancelled or (lambda: False)
    index_dir = Path(params.index_dir).expanduser().resolve()
    index_dir.mkdir(parents=True, exist_ok=True)
    model = read_model(params.model_path)
    summary = BuildSummary(index_dir=str(index_dir))

    with WriterLock(index_dir):
        previous = read_manifest(index_dir)
        if previous is not None:
            check_model(previous, model, index_dir)
        shard_dir = index_dir / "shards"
        shard_dir.mkdir(exist_ok=True)
        previous_rasters = _previous_rasters(index_dir, previous)

        wanted: dict[str, TilingParams] = {}
        for path, (tiling_record, _) in previous_rasters.items():
            if Path(path).exists():
                wanted[path] = TilingParams(**{**tiling_record, "bands": _bands(tiling_record)})
            else:
                summary.rasters_removed += 1
        for raster in params.rasters:
            wanted[str(Path(raster).expanduser().resolve())] = params.tiling

        progress(0.0, f"checking {len(wanted)} raster(s)")
        shards: dict[str, Shard] = {}
        jobs: list[_Job] = []
        previous_keys = {shard for _, shard in previous_rasters.values()}
        for path, tiling in wanted.items():
            try:
                source = describe(path, tiling.bands, model.contract.bands)
                grid = resolve_grid(source, tiling, model.contract.input_size)
            except RasterError as exc:
                summary.failed.append((exc.path, exc.problem))
                continue
            key = shard_key(source, tiling, model, params.tta)
            shard_path = shard_dir / f"{key}.npz"
            if shard_path.exists():
                try:
                    shards[key] = Shard.load(shard_path)
                except (OSError, ValueError, KeyError):
                    shard_path.unlink()  # a damaged shard is simply recomputed
                else:
                    if key in previous_keys:
                        summary.rasters_unchanged += 1
                    else:
                        summary.rasters_resumed += 1
                    continue
            jobs.append(_resumable_job(_Job(source, tiling, grid, key,
                                            tile_windows(source.width, source.height, grid)), shard_dir))
            if is_cancelled():
                raise BuildCancelled(f"{index_dir}: build cancelled; the previous index is unchanged")

        if jobs:
            embedder = Embedder(model, params.device)
            summary.provider = embedder.describe() + (" with 4-rotation TTA" if params.tta else "")
            embed_started = time.perf_counter()
            for job, shard, error in _embed_jobs(jobs, embedder, params, summary, progress, is_cancelled,
                                                 shard_dir):
                if error is not None:
                    summary.failed.append((job.source.path, error))
                    continue
                shard.save(shard_dir / f"{job.key}.npz")
                shards[job.key] = shard
                summary.rasters_indexed += 1
            summary.embed_seconds = time.perf_counter() - embed_started

        if _nothing_changed(previous, previous_keys, shards, summary, params.approximate):
            manifest = previous
        else:
            progress(99.0, "writing the index")
            manifest = write_generation(index_dir, shards, model, params.approximate, previous)
    summary.tiles_total = manifest["tile_count"]
    summary.index_kind = manifest["index_kind"]
    summary.seconds = time.perf_counter() - started
    progress(100.0, "done")
    return summary


def _nothing_changed(previous: dict | None, previous_keys: set[str], shards: dict[str, Shard],
                     summary: BuildSummary, approximate: bool | None) -> bool:
    """True when the live generation already holds exactly these shards with the same index kind."""
    if previous is None or set(shards) != previous_keys or summary.rasters_removed:
        return False
    return approximate is None or previous["index_kind"] == choose_kind(previous["tile_count"], approximate)


def shard_key(source: RasterSource, tiling: TilingParams, model: ModelInfo, tta: bool) -> str:
    """Everything that changes a raster's embeddings: the file, the tiling, the model, TTA."""
    fp = source.fingerprint
    identity = json.dumps([fp.path, fp.size, fp.mtime_ns, tiling.as_record(), list(source.bands),
                           model.sha256, tta], sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def _bands(tiling_record: dict):
    return tuple(tiling_record["bands"]) if tiling_record.get("bands") else None


def _previous_rasters(index_dir: Path, manifest: dict | None) -> dict[str, tuple[dict, str]]:
    """path -> (tiling record, shard key) for every raster of the live index."""
    if manifest is None:
        return {}
    connection = open_catalog(index_dir, manifest)
    try:
        rows = connection.execute("SELECT path, tiling, shard FROM rasters").fetchall()
    finally:
        connection.close()
    return {path: (json.loads(tiling), shard) for path, tiling, shard in rows}


# ---------------------------------------------------------------- embedding

@dataclass
class _Batch:
    job_index: int
    windows: list
    tiles: np.ndarray | None  # (n, bands, S, S) float32, preprocessed for the model
    read: int  # windows this batch accounts for (kept + skipped), for progress
    skipped: int
    last: bool = False  # the job's final batch
    error: str | None = None


def _partial_path(shard_dir: Path, key: str) -> Path:
    return shard_dir / f"{key}.partial.npz"


def _resumable_job(job: _Job, shard_dir: Path) -> _Job:
    """Pick up the checkpoint an interrupted build left for this raster, if any."""
    path = _partial_path(shard_dir, job.key)
    if path.exists():
        try:
            done = Shard.load(path)
            job.start, job.done = int(done.record["next_window"]), done
        except (OSError, ValueError, KeyError):
            path.unlink()  # a damaged checkpoint only costs the work it held
    return job


def _produce_batches(jobs: list[_Job], size: int, batch_size: int,
                     preprocess: Callable[[np.ndarray], np.ndarray]) -> Iterator[_Batch]:
    """Read and preprocess every job's tiles in order, in batches that never span two rasters."""
    for job_index, job in enumerate(jobs):
        windows, tiles, read, skipped = [], [], 0, 0
        try:
            with open_dataset(job.source.path) as dataset:
                for window, tile in read_tiles(dataset, job.source, job.windows[job.start:], size,
                                               job.tiling.min_valid_fraction):
                    read += 1
                    if tile is None:
                        skipped += 1
                    else:
                        windows.append(window)
                        tiles.append(tile)
                    if len(tiles) == batch_size:
                        yield _Batch(job_index, windows, preprocess(np.stack(tiles)), read, skipped)
                        windows, tiles, read, skipped = [], [], 0, 0
        except RasterError as exc:
            yield _Batch(job_index, [], None, read, skipped, last=True, error=exc.problem)
            continue
        yield _Batch(job_index, windows, preprocess(np.stack(tiles)) if tiles else None, read, skipped,
                     last=True)


def _embed_jobs(jobs: list[_Job], embedder: Embedder, params: BuildParams, summary: BuildSummary,
                progress: Progress, is_cancelled: Callable[[], bool], shard_dir: Path):
    """Yield (job, shard, error) as each raster finishes; reading runs ahead in a thread.

    Every CHECKPOINT_TILES windows the raster's embeddings so far are saved, so that a build killed
    in the middle of a large raster resumes there.
    """
    total = sum(len(job.windows) - job.start for job in jobs) or 1
    done = 0
    embed = embedder.embed_tta if params.tta else embedder.embed
    current: _Accumulator | None = None
    batches = prefetch(lambda: _produce_batches(jobs, embedder.input_size, params.batch_size,
                                                embedder.preprocess))
    try:
        for batch in batches:
            if is_cancelled():
                raise BuildCancelled(f"{summary.index_dir}: build cancelled; the previous index is unchanged "
                                     f"and the work done so far will be reused by the next build")
            job = jobs[batch.job_index]
            if current is None or current.job is not job:
                current = _Accumulator.start(job)
            if batch.tiles is not None:
                current.vectors.append(embed(batch.tiles))
                current.windows.extend(batch.windows)
            current.skipped += batch.skipped
            current.read += batch.read
            done += batch.read
            summary.tiles_skipped += batch.skipped
            progress(min(98.0, 100.0 * done / total), f"{Path(job.source.path).name}: {done}/{total} tiles")
            if batch.last:
                _partial_path(shard_dir, job.key).unlink(missing_ok=True)
                if batch.error:
                    yield job, None, batch.error
                else:
                    shard = _make_shard(current, embedder.embedding_dim)
                    summary.tiles_indexed += len(shard.vectors) - (len(job.done.vectors) if job.done else 0)
                    yield job, shard, None
            elif current.read - current.checkpointed >= CHECKPOINT_TILES:
                checkpoint = _make_shard(current, embedder.embedding_dim)
                checkpoint.record["next_window"] = job.start + current.read
                checkpoint.save(_partial_path(shard_dir, job.key))
                current.checkpointed = current.read
    finally:
        batches.close()


def _make_shard(acc: _Accumulator, dim: int) -> Shard:
    job, vectors, windows, source = acc.job, acc.vectors, acc.windows, acc.job.source
    n = len(windows)
    window_array = np.asarray(windows, dtype=np.int64).reshape(n, 4)
    bounds = np.array([window_bounds(source.transform, w) for w in windows], dtype=np.float64).reshape(n, 4)
    record = {
        "path": source.path, "size": source.fingerprint.size, "mtime_ns": source.fingerprint.mtime_ns,
        "crs_wkt": source.crs_wkt, "width": source.width, "height": source.height,
        "transform": list(source.transform), "bands": list(source.bands),
        "stretch": [list(s) for s in source.stretch] if source.stretch else None,
        "tiling": job.tiling.as_record(), "tile_px": job.grid.tile_px, "stride_px": job.grid.stride_px,
        "skipped": acc.skipped,
    }
    return Shard(vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
                 windows=window_array, bounds=bounds, bounds_4326=_bounds_4326(source, windows), record=record)


def _bounds_4326(source: RasterSource, windows: list) -> np.ndarray:
    """Longitude/latitude envelope of each tile (NaN for rasters without a CRS)."""
    n = len(windows)
    if not source.crs_wkt or n == 0:
        return np.full((n, 4), np.nan)
    from rasterio.crs import CRS
    from rasterio.warp import transform

    xs, ys = [], []
    for window in windows:
        cx, cy = window_corners(source.transform, window)
        xs.extend(cx)
        ys.extend(cy)
    lon, lat = transform(CRS.from_wkt(source.crs_wkt), CRS.from_epsg(4326), xs, ys)
    lon, lat = np.asarray(lon).reshape(n, 4), np.asarray(lat).reshape(n, 4)
    return np.stack([lon.min(1), lat.min(1), lon.max(1), lat.max(1)], axis=1)
