"""Embedding rasters into shards: read tiles ahead in a thread, embed them in batches, checkpoint.

Every CHECKPOINT_TILES windows a raster's embeddings so far are saved as a partial shard, so a
build killed in the middle of a large raster resumes there. Embeddings that are not finite
(a model that gives NaN on some input) are never stored: their tiles are counted as skipped.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .embedder import Embedder, finite_rows
from .errors import BuildCancelled, RasterError
from .geometry import lonlat_points, reaches_lonlat
from .params import TilingParams
from .pipeline import prefetch
from .raster import RasterSource, open_dataset
from .store import Shard, ShardError, partial_path
from .tiling import Grid, read_tiles, window_bounds, window_corners

CHECKPOINT_TILES = 2048  # a raster's partial embeddings are saved this often (in windows read)


@dataclass
class Job:
    """One raster (or one block of its windows) to embed, from window `start` on (after a checkpoint of an
    interrupted build)."""

    source: RasterSource
    tiling: TilingParams
    grid: Grid
    key: str
    windows: list
    record_extra: dict  # what the shard records besides the raster: model, TTA
    start: int = 0
    done: Shard | None = None  # what the checkpoint holds
    block: tuple[int, int] | None = None  # (number, of) for one block of a raster cut in blocks (core/blocks.py)


@dataclass
class JobCounts:
    """Tiles met while embedding, for the build summary."""

    indexed: int = 0
    skipped: int = 0
    non_finite: int = 0  # tiles whose embedding held NaN/inf, dropped
    where: set[str] = field(default_factory=set)  # Dask workers' Embedder.describe(): where inference ran


@dataclass
class _Accumulator:
    """The embeddings of the raster being embedded, so far."""

    job: Job
    vectors: list = field(default_factory=list)
    windows: list = field(default_factory=list)
    skipped: int = 0
    read: int = 0  # windows read since `job.start`
    checkpointed: int = 0

    @classmethod
    def start(cls, job: Job) -> _Accumulator:
        if job.done is None:
            return cls(job)
        done = job.done
        return cls(job, vectors=[done.vectors], windows=[tuple(w) for w in done.windows.tolist()],
                   skipped=done.record["skipped"])


def resumable(job: Job, index_dir: Path, dim: int) -> Job:
    """Pick up the checkpoint an interrupted build left for this raster, if it verifies."""
    path = partial_path(index_dir, job.key)
    if path.exists():
        try:
            done = Shard.load(path, dim)
            job.start, job.done = int(done.record["next_window"]), done
        except (ShardError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # a damaged checkpoint only costs the work it held
    return job


@dataclass
class _Batch:
    job_index: int
    windows: list
    tiles: np.ndarray | None  # (n, bands, S, S) float32, preprocessed for the model
    read: int  # windows this batch accounts for (kept + skipped), for progress
    skipped: int
    last: bool = False  # the job's final batch
    error: str | None = None


def _produce_batches(jobs: list[Job], size: int, batch_size: int,
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


def embed_jobs(jobs: list[Job], embedder: Embedder, tta: bool, batch_size: int, index_dir: Path,
               counts: JobCounts, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool]):
    """Yield (job, shard, error) as each raster finishes; reading runs ahead in a thread."""
    total = sum(len(job.windows) - job.start for job in jobs) or 1
    done = 0
    embed = embedder.embed_tta if tta else embedder.embed
    current: _Accumulator | None = None
    batches = prefetch(lambda: _produce_batches(jobs, embedder.input_size, batch_size, embedder.preprocess))
    try:
        for batch in batches:
            if is_cancelled():
                raise BuildCancelled(f"{index_dir}: build cancelled; the previous index is unchanged "
                                     f"and the work done so far will be reused by the next build")
            job = jobs[batch.job_index]
            if current is None or current.job is not job:
                current = _Accumulator.start(job)
            if batch.tiles is not None:
                vectors = embed(batch.tiles)
                finite = finite_rows(vectors)
                if not finite.all():
                    counts.non_finite += int((~finite).sum())
                    current.skipped += int((~finite).sum())
                current.vectors.append(vectors[finite])
                current.windows.extend(w for w, keep in zip(batch.windows, finite) if keep)
            current.skipped += batch.skipped
            current.read += batch.read
            done += batch.read
            counts.skipped += batch.skipped
            part = f" block {job.block[0]}/{job.block[1]}" if job.block else ""
            progress(min(98.0, 100.0 * done / total), f"{Path(job.source.path).name}{part}: {done}/{total} tiles")
            if batch.last:
                partial_path(index_dir, job.key).unlink(missing_ok=True)
                if batch.error:
                    yield job, None, batch.error
                else:
                    shard = make_shard(current, embedder.embedding_dim)
                    counts.indexed += len(shard.vectors) - (len(job.done.vectors) if job.done else 0)
                    yield job, shard, None
            elif current.read - current.checkpointed >= CHECKPOINT_TILES:
                checkpoint = make_shard(current, embedder.embedding_dim)
                checkpoint.record["next_window"] = job.start + current.read
                checkpoint.save(partial_path(index_dir, job.key))
                current.checkpointed = current.read
    finally:
        batches.close()


def make_shard(acc: _Accumulator, dim: int) -> Shard:
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
        "skipped": acc.skipped, **job.record_extra,
    }
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    return Shard(vectors=np.ascontiguousarray(stacked, dtype=np.float32), windows=window_array, bounds=bounds,
                 bounds_4326=_bounds_4326(source, windows), record=record)


def _bounds_4326(source: RasterSource, windows: list) -> np.ndarray:
    """Longitude/latitude envelope of each tile (NaN for rasters without a CRS or with a local one, and
    for tiles with a corner outside the projection's domain)."""
    n = len(windows)
    if not reaches_lonlat(source.crs_wkt) or n == 0:
        return np.full((n, 4), np.nan)
    xs, ys = [], []
    for window in windows:
        cx, cy = window_corners(source.transform, window)
        xs.extend(cx)
        ys.extend(cy)
    lon, lat, _ = lonlat_points(source.crs_wkt, xs, ys)
    lon, lat = lon.reshape(n, 4), lat.reshape(n, 4)
    bounds = np.stack([lon.min(1), lat.min(1), lon.max(1), lat.max(1)], axis=1)
    # A tile with a corner PROJ could not place has no envelope (not one of its other corners): all NaN.
    bounds[~np.isfinite(np.concatenate([lon, lat], axis=1)).all(axis=1)] = np.nan
    return bounds
