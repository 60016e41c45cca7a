"""What a build does with each raster it covers: keep it as it is, reuse a shard an earlier build finished,
embed it (jobs: one per block of its windows, core/blocks.py), or, when it fails, keep its previous tiles.

A raster's shard is named by its key, a hash of everything that changes its embeddings (the file, the
tiling, the bands, the model, TTA): a shard on disk under that key is a finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .blocks import BlockAssembly, remove_blocks
from .build_summary import BuildSummary
from .errors import RasterError, RasterMissingError
from .jobs import Job
from .model import ModelInfo
from .params import BuildParams, TilingParams
from .raster import RasterSource, describe, resolve_raster_path
from .store import LiveRaster, Shard, ShardError, shard_path
from .tiling import resolve_grid, tile_windows


def wanted_rasters(params: BuildParams, previous_rasters: dict[str, LiveRaster],
                   summary: BuildSummary) -> dict[str, TilingParams]:
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


class BuildPlan:
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
        # The jobs are blocks of the rasters' windows; this turns their outcomes back into rasters'.
        self.blocks = BlockAssembly(index_dir, model.contract.embedding_dim, params.block_tiles)

    def add(self, path: str, tiling: TilingParams) -> None:
        model, dim = self.model, self.model.contract.embedding_dim
        try:
            source = describe(path, tiling.bands, model.contract.bands)
            grid = resolve_grid(source, tiling, model.contract.tile_px)
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
                remove_blocks(self.index_dir, key)  # left by a build killed while it joined them
                return
        extra = {"model_sha256": model.sha256, "tta": self.params.tta}
        windows = tile_windows(source.width, source.height, grid)
        jobs, joined = self.blocks.add(Job(source, tiling, grid, key, windows, extra))
        self.jobs += jobs
        if joined is not None:  # every block was finished by a build killed before it joined them
            self.shards[key] = joined
            self.summary.rasters_resumed += 1

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
                    shard = Shard.load(shard_path(self.index_dir, previous.key),
                                       self.model.contract.embedding_dim)
                except ShardError as exc:
                    problem += f"; its previous tiles are lost too ({exc})"
                else:
                    self.shards[previous.key] = shard
                    self.summary.rasters_kept += 1
                    problem += f"; its {len(shard.vectors)} previously indexed tiles are kept"
        self.summary.failed.append((path, problem))


def shard_key(source: RasterSource, tiling: TilingParams, model: ModelInfo, tta: bool) -> str:
    """Everything that changes a raster's embeddings: the file, the tiling, the model, TTA."""
    fp = source.fingerprint
    return shard_key_of(fp.path, fp.size, fp.mtime_ns, tiling.as_record(), source.bands, model.sha256, tta)


def shard_key_of(path: str, size: int, mtime_ns: int, tiling_record: dict, bands, model_sha256: str,
         tta: bool) -> str:
    identity = json.dumps([path, size, mtime_ns, tiling_record, list(bands), model_sha256, tta],
                          sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def _bands(tiling_record: dict):
    return tuple(tiling_record["bands"]) if tiling_record.get("bands") else None
