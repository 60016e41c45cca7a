"""Large indexes for benchmarks: real embeddings of real tiles, multiplied into millions of tiles.

The vectors are real tile embeddings of the sample raster (the bundled model) with small noise,
so they cluster the way an archive's tiles do; the tiles sit on a grid of virtual rasters side by
side on the ground (EPSG:3857, 0.5 m pixels), so exclusion and NMS work as on real data. Everything
is written through rsir's own store (write_generation): the catalog, FAISS and manifest are real.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsir_qgis_plugin.core.model import read_model  # noqa: E402
from rsir_qgis_plugin.core.store import DbaRun, Shard, commit_changes, write_generation  # noqa: E402

SAMPLE_RASTER = ROOT / "tests" / "data" / "oam_town_1024.tif"
TILES_PER_RASTER = 10_000  # a 100 x 100 grid of tiles
GRID = 100
TILE_PX = 128
PIXEL_M = 0.5
NOISE = 0.5  # norm of the noise added to a blend of two real embeddings


def real_embeddings(workdir: Path) -> np.ndarray:
    """Embeddings of every tile of the sample raster (128 px tiles, 32 px stride) by the bundled model."""
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams
    from rsir_qgis_plugin.core.store import IndexReader

    index = workdir / "sample-index"
    build_index(BuildParams(index_dir=index, rasters=(SAMPLE_RASTER,),
                            tiling=TilingParams(tile_px=TILE_PX, stride_px=32)))
    with IndexReader(index) as reader:
        return reader.vectors(np.arange(reader.size))


def synthetic_vectors(base: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Blends of two real embeddings plus noise: a continuum between real tiles, not copies of them."""
    rng = np.random.default_rng(seed)
    first, second = base[rng.integers(0, len(base), count)], base[rng.integers(0, len(base), count)]
    weight = rng.uniform(0.0, 1.0, (count, 1)).astype(np.float32)
    vectors = weight * first + (1 - weight) * second
    vectors += rng.standard_normal(vectors.shape, dtype=np.float32) * (NOISE / np.sqrt(base.shape[1]))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def raster_shard(number: int, vectors: np.ndarray) -> Shard:
    from rasterio.crs import CRS
    from rasterio.warp import transform

    n = len(vectors)
    cols, rows = np.arange(n) % GRID * TILE_PX, np.arange(n) // GRID * TILE_PX
    windows = np.stack([cols, rows, np.full(n, TILE_PX), np.full(n, TILE_PX)], axis=1).astype(np.int64)
    extent = GRID * TILE_PX * PIXEL_M
    left, top = 1_000_000.0 + (number % 100) * extent, 6_000_000.0 - (number // 100) * extent
    xmin, ymax = left + cols * PIXEL_M, top - rows * PIXEL_M
    xmax, ymin = xmin + TILE_PX * PIXEL_M, ymax - TILE_PX * PIXEL_M
    bounds = np.stack([xmin, ymin, xmax, ymax], axis=1)
    mercator, wgs84 = CRS.from_epsg(3857), CRS.from_epsg(4326)
    lon_min, lat_min = (np.asarray(v) for v in transform(mercator, wgs84, xmin.tolist(), ymin.tolist()))
    lon_max, lat_max = (np.asarray(v) for v in transform(mercator, wgs84, xmax.tolist(), ymax.tolist()))

    size = GRID * TILE_PX
    record = {"path": f"/archive/virtual-{number:05d}.tif", "size": 0, "mtime_ns": 0,
              "crs_wkt": mercator.to_wkt(), "width": size, "height": size,
              "transform": [PIXEL_M, 0.0, left, 0.0, -PIXEL_M, top, 0.0, 0.0, 1.0][:6], "bands": [1, 2, 3],
              "stretch": None, "tiling": {"tile_px": TILE_PX, "tile_m": None, "stride_px": TILE_PX,
                                          "stride_m": None, "bands": None, "min_valid_fraction": 0.5},
              "tile_px": TILE_PX, "stride_px": TILE_PX, "skipped": 0}
    return Shard(vectors=vectors, windows=windows, bounds=bounds,
                 bounds_4326=np.stack([lon_min, lat_min, lon_max, lat_max], axis=1), record=record)


def write_synthetic_index(index_dir: Path, tiles: int, base: np.ndarray, seed: int = 0,
                          extra: dict[str, Shard] | None = None, dba: bool = False) -> dict:
    """An index of `tiles` synthetic tiles (plus `extra` real shards) written by rsir's store; its manifest.
    With `dba` the segment gets its DBA search vectors (store/dba.py)."""
    shards: dict[str, Shard] = dict(extra or {})
    for number, start in enumerate(range(0, tiles, TILES_PER_RASTER)):
        count = min(TILES_PER_RASTER, tiles - start)
        shards[f"virtual{number:06d}"] = raster_shard(number, synthetic_vectors(base, count, seed + number))
    Path(index_dir).mkdir(parents=True, exist_ok=True)
    model = read_model(None)
    run = DbaRun(Path(index_dir), model.contract.embedding_dim) if dba else None
    return write_generation(Path(index_dir), shards, model, None, None, dba=run)


def write_synthetic_segments(index_dir: Path, tiles: int, base: np.ndarray, segments: int) -> dict:
    """An index of `tiles` synthetic tiles (whole virtual rasters) written as `segments` successive builds
    would write it: the first a new generation, each next one a commit of its rasters in a new segment
    (ivfpq segments encoded with the index's shared codebook); its manifest. Only one build's vectors are
    in memory at a time. Raster n's vectors are write_synthetic_index's (seed n)."""
    rasters = tiles // TILES_PER_RASTER
    cuts = np.linspace(0, rasters, segments + 1).astype(int)
    Path(index_dir).mkdir(parents=True)
    model, manifest = read_model(None), None
    for start, end in zip(cuts[:-1], cuts[1:]):
        shards = {f"virtual{n:06d}": raster_shard(n, synthetic_vectors(base, TILES_PER_RASTER, n))
                  for n in range(start, end)}
        manifest = (write_generation(Path(index_dir), shards, model, None, None) if manifest is None
                    else commit_changes(Path(index_dir), manifest, model, shards, [], set(), None))
    return manifest
