"""A build killed (SIGKILL) while it computes DBA search vectors leaves the previous index as it was, in use,
and the next build finishes the job without embedding anything again (issue 22 item 1)."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.search import search_box
from rsir_qgis_plugin.core.store import IndexReader, read_manifest
from tests.core.test_feedback import pixel_box
from tests.reliability.conftest import ROOT, run_cli, snapshot


@pytest.mark.slow  # embeds 13,843 tiles, then DBA over them exactly, twice (about 20 s on 2 cores)
def test_a_build_killed_during_dba_leaves_the_previous_index_and_the_next_build_finishes(tmp_path, tiny_model,
                                                                                        town_full):
    index = tmp_path / "idx"
    built = run_cli("index", "build", index, town_full, "--model", tiny_model, "--tile-size", "16",
                    "--stride", "8", timeout=600)
    assert built.returncode == 0, built.stderr
    before, tiles = snapshot(index), read_manifest(index)["tile_count"]
    assert tiles > 10_000
    # `--dba` on the same rasters: nothing to embed, the rewrite computes DBA for every tile.
    build = subprocess.Popen([sys.executable, "-m", "rsir_qgis_plugin", "index", "build", str(index), "--dba"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The new segment's folder holds vectors.faiss before DBA starts, and search.faiss once it ends.
        deadline = time.monotonic() + 300
        while not list((index / "segments").glob(".s*.tmp/vectors.faiss")):
            assert build.poll() is None and time.monotonic() < deadline, "the build ended before DBA"
            time.sleep(0.05)
        time.sleep(1.0)
        assert not list((index / "segments").glob(".s*.tmp/search.faiss")), "DBA finished too fast to kill"
        build.send_signal(signal.SIGKILL)
        assert build.wait(60) == -signal.SIGKILL
    finally:
        if build.poll() is None:
            build.kill()
    after = {name: digest for name, digest in snapshot(index).items() if not name.startswith("segments/.s")}
    assert after == before  # the manifest, segments and shards as they were; only the unfinished folder added
    with IndexReader(index) as reader:
        assert reader.augmented is None and reader.size == tiles
    assert search_box(index, town_full, pixel_box(town_full, 512, 512, 16), None, SearchParams(k=5)).hits
    again = run_cli("index", "build", index, "--dba", timeout=600)
    assert again.returncode == 0, again.stderr
    assert "embedded 0 tiles" in again.stdout and read_manifest(index)["dba"]["neighbours"] == 10
    assert not list((index / "segments").glob(".s*.tmp"))
    with IndexReader(index) as reader:
        assert reader.augmented is not None and reader.size == tiles


@pytest.fixture
def town_full(tmp_path) -> Path:
    import shutil

    from tests.conftest import TOWN_RASTER

    return Path(shutil.copy(TOWN_RASTER, tmp_path / "town.tif"))
