"""Rasters embedded in blocks of windows (core/blocks.py): blocks follow the raster's internal blocks, a
build in blocks gives the index of a build without, a killed build resumes at the block, a damaged block
costs its own windows, and the progress names the blocks. Real GeoTIFFs, the real tiny ONNX model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.blocks import block_ranges, internal_block_rows
from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import BuildCancelled
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.core.store import IndexReader
from rsir_qgis_plugin.core.store.shards import BLOCK_MARK, Shard, block_key, finished_shard_files, shard_path
from rsir_qgis_plugin.core.tiling import Grid, tile_windows
from tests.conftest import TOWN_RASTER

TILING = TilingParams(tile_px=96, stride_px=48)  # 21 x 21 = 441 windows on the 1024 px town raster
BLOCK_TILES = 64  # so the town raster is 8 blocks


def chunked(index_dir: Path, model: Path, **changes) -> BuildParams:
    changes.setdefault("block_tiles", BLOCK_TILES)
    return BuildParams(index_dir=index_dir, rasters=(TOWN_RASTER,), model_path=model, tiling=TILING, batch_size=16,
                       **changes)


def contents(index_dir: Path) -> tuple[list, np.ndarray]:
    """Every tile (id, raster path, window, bounds) with its stored vector, in id order."""
    with IndexReader(index_dir) as reader:
        tiles, vectors = [], []
        for batch, batch_vectors in reader.iter_tiles():
            tiles += [(t.id, t.raster.path, t.window, t.bounds) for t in batch]
            vectors.append(batch_vectors)
        return tiles, np.concatenate(vectors)


def block_shards(index_dir: Path) -> list[Path]:
    return [p for p in (index_dir / "shards").glob(f"*{BLOCK_MARK}*.npz") if not p.name.endswith(".partial.npz")
            and not p.name.startswith(".")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model) -> tuple[list, np.ndarray]:
    """The town raster indexed in one piece (a block larger than the raster)."""
    index = tmp_path_factory.mktemp("whole") / "idx"
    build_index(chunked(index, tiny_model, block_tiles=100_000))
    return contents(index)


def test_blocks_are_whole_rows_of_windows_starting_on_the_rasters_internal_block_rows():
    windows = tile_windows(1024, 1024, Grid(tile_px=96, stride_px=48))
    band = internal_block_rows(str(TOWN_RASTER))
    assert band == 256  # the sample is tiled in 256 px blocks
    ranges = block_ranges(windows, BLOCK_TILES, band)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(windows) == 441
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, in order
    assert all(0 < end - first <= BLOCK_TILES and first % 21 == 0 and end % 21 == 0 for first, end in ranges)
    # Every band of internal blocks (rows 0-255, 256-511...) begins a block: no block straddles two bands'
    # first window rows.
    first_rows = {windows[first][1] for first, _ in ranges}
    for start in (0, 256, 512, 768):
        assert min(row for row in windows.rows if row >= start) in first_rows
    assert block_ranges(windows, 441, band) == [(0, 441)]
    # A row of windows wider than a block: the row is cut into equal pieces.
    assert block_ranges(windows, 8, band)[:3] == [(0, 7), (7, 14), (14, 21)]


def test_a_build_in_blocks_gives_the_index_of_a_build_in_one_piece_and_its_progress_names_the_blocks(
        tmp_path, tiny_model, reference):
    messages = []
    summary = build_index(chunked(tmp_path / "idx", tiny_model), progress=lambda p, m: messages.append(m))
    tiles, vectors = contents(tmp_path / "idx")
    assert tiles == reference[0] and len(tiles) == summary.tiles_total == summary.tiles_indexed
    np.testing.assert_allclose(vectors, reference[1], atol=1e-5)
    assert any("oam_town_1024.tif block 8/8:" in m for m in messages)
    assert any("block 1/8:" in m for m in messages)
    # The raster's shard is one file of the whole raster, as without blocks: its blocks are gone.
    [shard_file] = finished_shard_files(tmp_path / "idx")
    assert not block_shards(tmp_path / "idx") and "block" not in Shard.load(shard_file).record
    assert len(Shard.load(shard_file).vectors) == len(tiles)


def test_a_killed_build_resumes_at_the_block_and_a_damaged_block_is_embedded_again(tmp_path, tiny_model,
                                                                                   reference):
    index = tmp_path / "idx"
    with pytest.raises(BuildCancelled):
        build_index(chunked(index, tiny_model), is_cancelled=lambda: len(block_shards(index)) >= 4)
    finished = sorted(block_shards(index))
    assert len(finished) >= 4 and not finished_shard_files(index)
    done = {path: len(Shard.load(path).vectors) for path in finished}
    damaged = finished[0]
    damaged.write_bytes(damaged.read_bytes()[:-100])  # a truncated block: its windows are embedded again
    resumed = build_index(chunked(index, tiny_model))
    reused = sum(n for path, n in done.items() if path != damaged)
    assert resumed.tiles_total == len(reference[0])
    assert resumed.tiles_indexed == resumed.tiles_total - reused  # only the blocks not finished (and the damaged one)
    tiles, vectors = contents(index)
    assert tiles == reference[0]
    np.testing.assert_allclose(vectors, reference[1], atol=1e-5)
    assert not block_shards(index) and not list((index / "shards").glob("*.partial.npz"))


def test_blocks_of_an_earlier_build_are_joined_without_embedding_when_all_are_finished(tmp_path, tiny_model,
                                                                                       reference):
    """A build killed after its last block, before joining them: the next one embeds nothing."""
    index = tmp_path / "idx"
    build_index(chunked(index, tiny_model))
    [shard_file] = finished_shard_files(index)
    whole = Shard.load(shard_file)
    windows = tile_windows(1024, 1024, Grid(96, 48))
    key = shard_file.name[:-4]
    # The blocks as the killed build left them, cut from the finished raster's shard by window range.
    index_of = {tuple(w): i for i, w in enumerate(windows)}
    at = np.array([index_of[tuple(w)] for w in whole.windows.tolist()])
    for first, end in block_ranges(windows, BLOCK_TILES, 256):
        rows = (at >= first) & (at < end)
        Shard(vectors=whole.vectors[rows], windows=whole.windows[rows], bounds=whole.bounds[rows],
              bounds_4326=whole.bounds_4326[rows],
              record={**whole.record, "block": [first, end], "skipped": 0}).save(
            shard_path(index, block_key(key, first, end)))
    shard_file.unlink()
    (index / "manifest.json").unlink()
    again = build_index(chunked(index, tiny_model, force=True))
    assert again.tiles_indexed == 0 and again.rasters_resumed == 1
    assert contents(index)[0] == reference[0] and not block_shards(index)
