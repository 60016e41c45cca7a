"""Rasters embedded in blocks of windows: the unit of a Dask task, of a checkpointed resume and of progress.

A raster with more windows than BuildParams.block_tiles is split into blocks of about that many windows,
each a contiguous range of its row-by-row window list, cut where the raster's own internal blocks (a COG's
tiles, a striped GeoTIFF's strips) begin a new row: a block then reads whole internal-block rows that the
next block seldom touches. Each block is one job (core/jobs.py), one Dask task and one block shard
(shards/<key>.block-<first>-<end>.npz), so one huge orthomosaic spreads over every worker, a killed build
resumes at the block and a worker lost mid-block costs that block only. When a raster's last block is in,
its blocks are joined into the raster's shard (shards/<key>.npz, the form every index holds; a raster of
one block is embedded straight into it, as before blocks existed) and the block files removed.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .jobs import Job, resumable
from .raster import open_dataset
from .store.shards import Shard, ShardError, block_files, block_key, joined_shard, shard_path
from .tiling import WindowPlan

Outcome = tuple[Job, Shard | None, str | None]  # (job, its shard, or why it failed)


def block_ranges(windows: WindowPlan, block_tiles: int, band_px: int | None = None) -> list[tuple[int, int]]:
    """[first, end) window ranges of the blocks of a raster's windows (row by row), in order.

    Blocks are whole rows of windows, grouped so that a block starts where a row of the raster's internal
    blocks (`band_px` pixels high) starts, and hold at most `block_tiles` windows; a band of internal
    blocks with more windows than that is cut into equal parts, and a row of windows wider than a block
    into equal pieces of the row.
    """
    total, n_cols = len(windows), len(windows.cols)
    if total <= block_tiles:
        return [(0, total)]
    if n_cols >= block_tiles:
        pieces = math.ceil(n_cols / block_tiles)
        cuts = [round(i * n_cols / pieces) for i in range(pieces + 1)]
        return [(row * n_cols + a, row * n_cols + b) for row in range(len(windows.rows))
                for a, b in zip(cuts, cuts[1:])]
    per_block = block_tiles // n_cols  # rows of windows
    spans, start = [], 0
    for first, end in _bands(windows.rows, max(1, band_px or 1)):
        if end - start > per_block and first > start:
            spans.append((start, first))
            start = first
        if end - start > per_block:
            parts = math.ceil((end - start) / per_block)
            cuts = [start + round(i * (end - start) / parts) for i in range(parts + 1)]
            spans += list(zip(cuts, cuts[1:]))
            start = end
    if start < len(windows.rows):
        spans.append((start, len(windows.rows)))
    return [(a * n_cols, b * n_cols) for a, b in spans]


def _bands(row_offsets: list[int], band_px: int) -> Iterator[tuple[int, int]]:
    """[first, end) runs of window rows whose top lies in the same row of internal blocks."""
    first = 0
    for i in range(1, len(row_offsets) + 1):
        if i == len(row_offsets) or row_offsets[i] // band_px != row_offsets[first] // band_px:
            yield first, i
            first = i


def internal_block_rows(path: str) -> int | None:
    """The height of the raster's internal blocks (tiles or strips) in pixels, None where GDAL says none."""
    try:
        with open_dataset(path) as dataset:
            height = dataset.block_shapes[0][0]
    except Exception:  # noqa: BLE001 - only an alignment hint: a raster that fails here fails when read
        return None
    return int(height) if height and height > 1 else None


@dataclass
class _Raster:
    """A raster being embedded in blocks: its whole job, its blocks' keys, and those finished so far."""

    job: Job
    keys: list[str]
    done: dict[str, Shard] = field(default_factory=dict)
    waiting: int = 0  # blocks still to finish
    error: str | None = None


class BlockAssembly:
    """The blocks of a build's rasters: jobs to run for each, and each raster's shard once they are in."""

    def __init__(self, index_dir: Path, dim: int, block_tiles: int):
        self.index_dir, self.dim, self.block_tiles = Path(index_dir), dim, block_tiles
        self.rasters: dict[str, _Raster] = {}  # block key -> its raster (shared by the raster's blocks)

    def add(self, raster: Job) -> tuple[list[Job], Shard | None]:
        """(the jobs still to run for this raster, its shard when every block was finished before).

        A block finished by an earlier (killed) build is reused once it verifies; a block with a
        checkpoint resumes from it (jobs.resumable); a damaged one is embedded again.
        """
        windows = raster.windows
        band = internal_block_rows(raster.source.path) if len(windows) > self.block_tiles else None
        ranges = block_ranges(windows, self.block_tiles, band)
        if len(ranges) == 1:  # embedded straight into the raster's shard, as before blocks
            self.rasters[raster.key] = _Raster(raster, [raster.key], waiting=1)
            return [resumable(raster, self.index_dir, self.dim)], None
        entry = _Raster(raster, [block_key(raster.key, a, b) for a, b in ranges])
        jobs = []
        for number, ((first, end), key) in enumerate(zip(ranges, entry.keys), start=1):
            shard = self._finished_block(key, raster.source.path, first, end)
            if shard is not None:
                entry.done[key] = shard
                continue
            block = replace(raster, key=key, windows=windows[first:end], block=(number, len(ranges)),
                            record_extra={**raster.record_extra, "block": [first, end]})
            jobs.append(resumable(block, self.index_dir, self.dim))
            self.rasters[key] = entry
        entry.waiting = len(jobs)
        if not jobs:
            try:
                return [], self._join(entry)
            except ShardError:  # blocks of two embeddings: all embedded again
                remove_blocks(self.index_dir, raster.key)
                return self.add(raster)
        return jobs, None

    def _finished_block(self, key: str, raster_path: str, first: int, end: int) -> Shard | None:
        path = shard_path(self.index_dir, key)
        if not path.exists():
            return None
        try:
            shard = Shard.load(path, self.dim)
            if shard.record.get("block") != [first, end] or shard.record["path"] != raster_path:
                raise ShardError(f"{path}: not the block of windows {first}-{end} of {raster_path}")
        except ShardError:
            path.unlink(missing_ok=True)  # a damaged block costs its own windows only
            return None
        return shard

    def finished(self, outcomes: Iterable[Outcome], save: bool) -> Iterator[Outcome]:
        """Each raster's (job, shard, error) once all its blocks are in, from the blocks' outcomes.

        `save`: write each block's shard here (a local build; Dask workers save their own). A raster of
        several blocks is joined and saved as its raster shard here, then its block files are removed. A
        block that failed fails its raster (once); its finished blocks stay for the next build.
        """
        for job, shard, error in outcomes:
            entry = self.rasters[job.key]
            if error is not None:
                entry.error = entry.error or error
            else:
                if save:
                    shard.save(shard_path(self.index_dir, job.key))
                entry.done[job.key] = shard
            entry.waiting -= 1
            if entry.waiting == 0:
                joined = None
                if entry.error is None:
                    try:
                        joined = self._join(entry)
                    except ShardError as exc:
                        remove_blocks(self.index_dir, entry.job.key)
                        entry.error = f"its blocks could not be joined ({exc}); the next build embeds it again"
                yield entry.job, joined, entry.error

    def _join(self, entry: _Raster) -> Shard:
        if entry.keys == [entry.job.key]:
            return entry.done[entry.job.key]
        shard = joined_shard([entry.done[key] for key in entry.keys])
        shard.save(shard_path(self.index_dir, entry.job.key))
        remove_blocks(self.index_dir, entry.job.key)
        return shard


def remove_blocks(index_dir: Path, key: str) -> None:
    """The block files of a raster whose shard is saved (left by a build killed while joining them)."""
    for path in block_files(index_dir, key):
        path.unlink(missing_ok=True)
