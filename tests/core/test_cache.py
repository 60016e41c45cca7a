"""The shared caches (core.cache): least-recently-used eviction, and a release that really lets go of the
onnxruntime sessions and of the index files (a Windows user can then move or delete the index folder)."""
import gc
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.cache import KeyedCache, release_shared
from rsir_qgis_plugin.core.embedder import shared_embedder
from rsir_qgis_plugin.core.errors import IndexStoreError
from rsir_qgis_plugin.core.model import read_model
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
from rsir_qgis_plugin.core.store import shared_reader
from tests.conftest import files_held


def query_vector(seed: int = 0) -> np.ndarray:
    query = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return query / np.linalg.norm(query)


@pytest.fixture
def ivf_index(tmp_path, tiny_model, town_crop) -> Path:
    """A real index of the town crop (16 tiles of 96 px) whose IVF vectors file is memory-mapped when read."""
    index_dir = tmp_path / "idx"
    build_index(BuildParams(index_dir=index_dir, rasters=(town_crop,), model_path=tiny_model,
                            tiling=TilingParams(tile_px=96, stride_px=96), approximate=True))
    return index_dir


class Made:
    """A value with a close() that records it."""

    def __init__(self, name: str, closed: list[str]):
        self.name, self._closed = name, closed

    def close(self) -> None:
        self._closed.append(self.name)


def test_the_least_recently_used_value_is_evicted_and_not_closed():
    closed: list[str] = []
    cache = KeyedCache(size=2, close=Made.close)
    a = cache.get("a", lambda: Made("a", closed))
    cache.get("b", lambda: Made("b", closed))
    assert cache.get("a", lambda: Made("a again", closed)) is a  # kept, and now the most recently used
    cache.get("c", lambda: Made("c", closed))
    assert ("a" in cache, "b" in cache, "c" in cache, len(cache)) == (True, False, True, 2)
    assert closed == []  # evicted values are dropped only: another thread may still be using one
    assert cache.get("b", lambda: Made("b anew", closed)).name == "b anew"
    assert "a" not in cache


def test_clear_closes_every_value_and_the_next_get_makes_a_new_one():
    closed: list[str] = []
    cache = KeyedCache(size=3, close=Made.close)
    first = cache.get(1, lambda: Made("one", closed))
    cache.get(2, lambda: Made("two", closed))
    cache.get(1, lambda: Made("unused", closed))
    cache.clear()
    assert (closed, len(cache)) == (["two", "one"], 0)  # least recently used first
    assert cache.get(1, lambda: Made("one anew", closed)) is not first


def test_threads_asking_at_once_get_one_value():
    made = []

    def make():
        time.sleep(0.05)  # a session or index takes a while to open
        made.append(object())
        return made[-1]

    cache = KeyedCache(size=2)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("model", make))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and all(value is made[0] for value in got)


def test_release_shared_clears_every_cache():
    closed: list[str] = []
    cache = KeyedCache(size=1, close=Made.close)
    cache.get("x", lambda: Made("x", closed))
    release_shared()
    assert (closed, len(cache)) == (["x"], 0)


def test_a_cache_keeps_at_least_one_value():
    with pytest.raises(ValueError, match="at least one"):
        KeyedCache(size=0)


def test_release_shared_lets_the_onnxruntime_sessions_go(tiny_model):
    model = read_model(tiny_model)
    first = shared_embedder(model, "cpu")
    assert shared_embedder(model, "cpu") is first
    gone = weakref.ref(first)
    release_shared()
    second = shared_embedder(model, "cpu")
    assert second is not first
    del first
    gc.collect()
    assert gone() is None, "something in rsir still holds the released session"
    assert second.embed(np.zeros((1, 3, 64, 64), np.uint8)).shape == (1, 512)  # the new session runs


def test_release_shared_closes_the_index_files_and_a_fresh_reader_opens_after(ivf_index, tmp_path):
    reader = shared_reader(ivf_index)
    assert shared_reader(ivf_index) is reader
    found = reader.search(query_vector(), 5)
    held = files_held(ivf_index)
    if held is not None:  # Linux: what the process has open or mapped
        assert any(path.endswith("vectors.faiss") for path in held), held  # memory-mapped
        assert any(path.endswith("catalog.sqlite") for path in held), held

    release_shared()
    assert files_held(ivf_index) in ([], None)  # though the test still holds the reader object
    with pytest.raises(IndexStoreError, match="closed"):
        reader.search(query_vector(), 5)

    moved = Path(shutil.move(ivf_index, tmp_path / "moved"))
    again = shared_reader(moved)
    assert again is not reader
    for got, expected in zip(again.search(query_vector(), 5), found):
        np.testing.assert_array_equal(got, expected)
    release_shared()
    shutil.rmtree(moved)  # Windows refuses while a file in it is open or mapped
    assert not moved.exists()


def test_a_rebuilt_index_gets_a_new_reader_and_the_old_one_stays_usable(ivf_index, tiny_model, town_crop,
                                                                        tmp_path):
    old = shared_reader(ivf_index)
    second = Path(shutil.copy(town_crop, tmp_path / "second.tif"))
    build_index(BuildParams(index_dir=ivf_index, rasters=(town_crop, second), model_path=tiny_model,
                            tiling=TilingParams(tile_px=96, stride_px=96), approximate=True))
    new = shared_reader(ivf_index)
    assert new is not old and (old.size, new.size) == (16, 32)
    assert len(old.search(query_vector(), 3)[0]) == 3  # a search that held the old reader finishes
