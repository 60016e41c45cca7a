"""What a build did, for the user: counts of tiles and rasters, failures, timing, the index's kind."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    dba_seconds: float = 0.0  # writing the index's DBA search vectors (store/dba.py), 0 without DBA
    provider: str = ""
    index_kind: str = ""
    segments: int = 0
    merged: str = ""  # what the size-tiered merge after the commit did (store/merge.py), "" when nothing
    # Saved searches re-run on the rasters this build added (core/standing.py: StandingReport), or skipped
    standing: list = field(default_factory=list)

    @property
    def tiles_per_second(self) -> float:
        return self.tiles_indexed / self.embed_seconds if self.embed_seconds > 0 else 0.0

    @property
    def new_hits(self) -> int:
        """Hits the saved searches found among this build's new rasters."""
        return sum(report.new_hits for report in self.standing)

    @property
    def rasters_succeeded(self) -> int:
        return self.rasters_indexed + self.rasters_unchanged + self.rasters_resumed

    def describe(self) -> str:
        text = (f"{self.tiles_total} tiles in {self.index_dir} ({self.index_kind}); this build embedded "
                f"{self.tiles_indexed} tiles from {self.rasters_indexed} raster(s)")
        if self.tiles_indexed:
            text += f" at {self.tiles_per_second:.1f} tiles/s on {self.provider}"
        text += (f", skipped {self.tiles_skipped} nodata/empty tiles; {self.rasters_unchanged} raster(s) "
                 f"unchanged, {self.rasters_resumed} resumed, {self.rasters_removed} removed "
                 f"(gone from disk); {self.seconds:.1f} s in all")
        if self.dba_seconds:
            text += f"; database-side augmentation {self.dba_seconds:.1f} s"
        if self.merged:
            text += f"; {self.merged}"
        if self.tiles_non_finite:
            text += f"; {self.tiles_non_finite} tile(s) dropped: the model gave NaN/infinite embeddings"
        if self.shards_recomputed:
            text += f"; {self.shards_recomputed} damaged shard(s) embedded again"
        if self.repaired:
            text += f"; the index was damaged ({self.repaired}) and has been rewritten"
        if self.failed:
            text += f"; {len(self.failed)} raster(s) failed:" + "".join(
                f"\n  {path}: {reason}" for path, reason in self.failed)
        text += "".join(f"\n{report.describe()}" for report in self.standing)  # one line a saved search
        return text
