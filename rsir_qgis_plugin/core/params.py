"""Settings dataclasses: the only link between a user interface (CLI, QGIS) and the engine."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")
# The smallest tile, in source pixels, worth embedding. A tile is resampled to the model's input
# (64-224 px): below 8 px that is a 8-28x blow-up of a handful of pixels, a blur with no texture or shape
# left to compare, and the tile count grows as 1/size^2 (1 px tiles of a 697x377 raster: 262,769 tiles).
# 8 px still holds a small object at its own resolution (a building in 10 m Sentinel-2 pixels).
MIN_TILE_PX = 8
MAX_BAND = 65_535  # GDAL's limit on bands in a raster


def parse_bands(text: str) -> tuple[int, ...] | None:
    """'4,3,2', '4 3 2' or '4, 3; 2' -> (4, 3, 2); '' -> None (RGB by colour interpretation).

    One parser for the command line, the build dialog, the saved settings and Processing, so a band
    list typed in one of them means the same in all. Raises ValueError with one line for a user.
    """
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        return None
    try:
        bands = tuple(int(p) for p in parts)
    except ValueError:
        bands = ()
    if not bands or min(bands) < 1 or max(bands) > MAX_BAND:
        raise ValueError(f"bands are band numbers from 1 to {MAX_BAND} separated by commas or spaces, "
                         f"e.g. 4,3,2 or 4 3 2 (got '{text[:80]}')")
    return bands


@dataclass(frozen=True)
class TilingParams:
    """How rasters are cut into tiles.

    Size and stride are in pixels or in ground metres (exactly one of each pair, or none: then the tile
    is the model's tile size in pixels, ModelContract.tile_px, its input size unless the model gives a
    footprint of its own, and the stride half a tile).
    """

    tile_px: int | None = None
    tile_m: float | None = None
    stride_px: int | None = None
    stride_m: float | None = None
    bands: tuple[int, ...] | None = None  # 1-based; None: RGB by colour interpretation, else 1-3
    min_valid_fraction: float = 0.5  # tiles with less valid (not nodata) area are skipped

    def __post_init__(self):
        if self.tile_px is not None and self.tile_m is not None:
            raise ValueError("give the tile size in pixels or in metres, not both")
        if self.stride_px is not None and self.stride_m is not None:
            raise ValueError("give the stride in pixels or in metres, not both")
        for name in ("tile_px", "tile_m", "stride_px", "stride_m"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise ValueError(f"bands are 1-based band numbers, got {self.bands}")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError("min_valid_fraction must be between 0 and 1")

    def as_record(self) -> dict:
        return {"tile_px": self.tile_px, "tile_m": self.tile_m, "stride_px": self.stride_px,
                "stride_m": self.stride_m, "bands": list(self.bands) if self.bands else None,
                "min_valid_fraction": self.min_valid_fraction}


@dataclass(frozen=True)
class BuildParams:
    """One index build: which rasters go into which index, with which model and tiling."""

    index_dir: Path
    rasters: tuple[Path, ...]
    model_path: Path | None = None  # None: the bundled default model
    tiling: TilingParams = field(default_factory=TilingParams)
    device: str = "auto"
    batch_size: int = 32
    approximate: bool | None = None  # None: exact below APPROXIMATE_THRESHOLD vectors, IVF above
    tta: bool = False  # rotation test-time augmentation for the indexed tiles
    force: bool = False  # start afresh in a folder whose manifest is lost or damaged (shards are reused)
    compact: bool = False  # rewrite the index as one segment (drops replaced tiles, re-verifies shards)
    merge: bool = True  # after the commit, merge segments of similar size (store/merge_policy.py); False: --no-merge
    dask: str | None = None  # embed on a Dask cluster: a scheduler address, or "local" for a LocalCluster
    # Database-side augmentation (store/dba.py): True adds it, False removes it (either rewrites an index
    # that has the other), None keeps the index's own setting (a new index: none, the default)
    dba: bool | None = None
    # Rasters with more tile windows than this are embedded in blocks of about this many (core/blocks.py):
    # one Dask task, one checkpointed unit of resume and of progress each. 4096: about a minute of a CPU's
    # inference, seconds of a GPU's; small enough to spread one raster over many workers, large enough
    # that a task's start (opening the file, the model's session) is noise
    block_tiles: int = 4096

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got '{self.device}'")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.block_tiles < 1:
            raise ValueError("block_tiles must be at least 1")


@dataclass(frozen=True)
class SearchParams:
    """How a query is answered."""

    k: int = 20
    tta: bool = False
    exclude_query_overlap: bool = True
    nms_iou: float = 0.3  # hits on the same raster overlapping more than this are thinned
    min_score: float | None = None
    device: str = "auto"
    model_path: Path | None = None  # None: the model the index was built with
    # Re-ranking (core/query_expansion.py): αQE, and the index's DBA search vectors where it has them.
    # False: the ranking by the model's embeddings alone, exactly as before re-ranking existed.
    rerank: bool = True
    # Scale-aware search (core/scales.py): where the index holds tiles of several ground sizes, the query is
    # embedded at each and every raster's tiles ranked against it at their scale. False: one embedding of
    # the box as drawn (or the image at the tiles' median size) for all, as before. One scale: no change.
    scale_aware: bool = True

    def __post_init__(self):
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got '{self.device}'")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError("nms_iou must be in (0, 1]")
