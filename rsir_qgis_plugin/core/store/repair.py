"""Repairing an index whose manifest, catalog or vectors are lost or damaged, from the shards that verify."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IndexStoreError
from ..model import ModelInfo, read_model
from .dba import DbaRun
from .generation import write_generation
from .lock import WriterLock
from .manifest import check_model, read_manifest
from .shards import Shard, ShardError, finished_shard_files


@dataclass
class RepairSummary:
    index_dir: str
    rasters: int = 0
    tiles: int = 0
    generation: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (shard file, why)
    other_model: list[str] = field(default_factory=list)  # shards of another model, left in place
    superseded: list[str] = field(default_factory=list)  # older shards of a raster that has a newer one
    assumed_model: int = 0  # shards written before rsir recorded their model

    def describe(self) -> str:
        text = (f"repaired {self.index_dir}: generation {self.generation} with {self.tiles} tiles from "
                f"{self.rasters} raster(s)")
        if self.assumed_model:
            text += f"; {self.assumed_model} shard(s) from an older rsir record no model and were taken as this one's"
        if self.superseded:
            text += f"; {len(self.superseded)} older shard(s) of the same rasters dropped"
        if self.other_model:
            text += f"; {len(self.other_model)} shard(s) of another model left unused"
        if self.rejected:
            text += f"; {len(self.rejected)} shard(s) failed verification and were dropped:" + "".join(
                f"\n  {path}: {why}" for path, why in self.rejected)
        return text + "\nrun `index build` to re-embed rasters whose files changed since"


@dataclass
class ShardCollection:
    """The shards of a folder that verify, one per raster, and what was left out and why."""

    chosen: dict[str, Shard] = field(default_factory=dict)  # key -> shard
    rejected: list[tuple[str, str]] = field(default_factory=list)
    other_model: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    assumed_model: int = 0


def collect_shards(index_dir: Path, model: ModelInfo) -> ShardCollection:
    """Every finished shard of `model` that verifies; of two for one raster, the one of its current file."""
    found = ShardCollection()
    best: dict[str, tuple[str, Shard, int]] = {}  # raster path -> (key, shard, shard mtime)
    for path in finished_shard_files(index_dir):
        try:
            shard = Shard.load(path, model.contract.embedding_dim)
        except ShardError as exc:
            found.rejected.append((str(path), str(exc).split(": ", 1)[-1]))
            continue
        recorded_model = shard.record.get("model_sha256")
        if recorded_model is not None and recorded_model != model.sha256:
            found.other_model.append(str(path))
            continue
        found.assumed_model += recorded_model is None
        candidate, raster = (path.name[:-4], shard, path.stat().st_mtime_ns), shard.record["path"]
        if raster in best:
            older, candidate = sorted([best[raster], candidate], key=lambda c: (_current(c[1]), c[2]))
            found.superseded.append(older[0])
        best[raster] = candidate
    found.chosen = {key: shard for key, shard, _ in best.values()}
    return found


def repair_index(index_dir: str | Path, model_path: str | Path | None = None) -> RepairSummary:
    """Rebuild catalog, vectors and manifest from every shard that verifies; shards are never rewritten."""
    index_dir = Path(index_dir).expanduser().resolve()
    if not index_dir.is_dir():
        raise IndexStoreError(f"{index_dir}: not an index folder")
    model = read_model(model_path)
    with WriterLock(index_dir):
        try:
            previous = read_manifest(index_dir)
        except IndexStoreError:
            previous = None  # the damage being repaired
        if previous is not None:
            check_model(previous, model, index_dir)
        found = collect_shards(index_dir, model)
        if not found.chosen:
            raise IndexStoreError(
                f"{index_dir}: no shard of model '{model.contract.name}' verifies "
                f"({len(found.rejected)} damaged, {len(found.other_model)} of another model); nothing "
                "was changed. Pass the model the index was built with (--model), or rebuild with "
                "`index build --force` and the rasters")
        # The older shards of rasters that have a current one are replaced; any other shard (of
        # another model, or that fails verification) is left where it is.
        superseded = frozenset(found.superseded)  # shard keys
        # An index with DBA keeps it (its manifest still readable); else none, as a new index.
        dba = DbaRun(index_dir, model.contract.embedding_dim) if previous and previous.get("dba") else None
        manifest = write_generation(index_dir, found.chosen, model, None, previous, drop_shards=superseded,
                                    dba=dba)
    return RepairSummary(index_dir=str(index_dir), rasters=manifest["raster_count"],
                         tiles=manifest["tile_count"], generation=manifest["generation"],
                         rejected=found.rejected, other_model=found.other_model,
                         superseded=found.superseded, assumed_model=found.assumed_model)


def _current(shard: Shard) -> bool:
    """True when the shard was embedded from the raster file as it is on disk now."""
    try:
        stat = os.stat(shard.record["path"])
    except OSError:
        return False
    return (stat.st_size, stat.st_mtime_ns) == (shard.record["size"], shard.record["mtime_ns"])
