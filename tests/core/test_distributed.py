"""Builds on a real dask.distributed LocalCluster (2 worker processes): same index as a local build,
failures on workers reported, a killed client loses nothing the workers finished."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from rsir_qgis_plugin import cli  # noqa: E402
from rsir_qgis_plugin.core import distributed as rsir_distributed  # noqa: E402
from rsir_qgis_plugin.core.builder import build_index  # noqa: E402
from rsir_qgis_plugin.core.errors import BuildCancelled, MissingDependencyError  # noqa: E402
from rsir_qgis_plugin.core.params import BuildParams, TilingParams  # noqa: E402
from rsir_qgis_plugin.core.store import MANIFEST, IndexReader  # noqa: E402
from tests.conftest import TOWN_RASTER  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TILING = TilingParams(tile_px=96, stride_px=96)  # 16 tiles per 384 px crop


def params(index_dir, rasters, model, **changes):
    return BuildParams(index_dir=index_dir, rasters=tuple(rasters), model_path=model, tiling=TILING,
                       batch_size=8, **changes)


def copies(tmp_path, raster, n):
    return [Path(shutil.copy(raster, tmp_path / f"copy{i}.tif")) for i in range(n)]


def contents(index_dir):
    """Every tile (raster path, window, bounds) with its stored vector, in id order."""
    with IndexReader(index_dir) as reader:
        tiles, vectors = [], []
        for batch, batch_vectors in reader.iter_tiles():
            tiles += [(t.raster.path, t.window, t.bounds, t.bounds_4326) for t in batch]
            vectors.append(batch_vectors)
        return tiles, np.concatenate(vectors)


def test_dask_local_build_from_the_cli_gives_the_same_index_as_a_local_build(tmp_path, tiny_model, town_crop,
                                                                             capsys):
    rasters = copies(tmp_path, town_crop, 4)
    started = time.perf_counter()
    local = build_index(params(tmp_path / "local", rasters, tiny_model))
    local_seconds = time.perf_counter() - started
    started = time.perf_counter()
    code = cli.main(["index", "build", str(tmp_path / "dask"), *map(str, rasters), "--model", str(tiny_model),
                     "--tile-size", "96", "--stride", "96", "--batch-size", "8", "--dask", "local"])
    dask_seconds = time.perf_counter() - started
    out = capsys.readouterr()
    assert code == 0, out.err
    print(f"local build {local_seconds:.1f} s, --dask local {dask_seconds:.1f} s")
    assert local.tiles_total == 64
    local_tiles, local_vectors = contents(tmp_path / "local")
    dask_tiles, dask_vectors = contents(tmp_path / "dask")
    assert dask_tiles == local_tiles
    # Bit for bit, though the workers' sessions run 1 thread each and the local one all cores.
    assert dask_vectors.shape == (64, 512) and np.array_equal(dask_vectors, local_vectors)
    assert not list((tmp_path / "dask" / "shards").glob("*.partial.npz"))


def test_a_raster_that_fails_on_a_worker_is_reported_and_the_rest_indexed(tmp_path, tiny_model, town_crop):
    good = copies(tmp_path, town_crop, 3)
    broken = Path(shutil.copy(TOWN_RASTER, tmp_path / "half.tif"))
    os.truncate(broken, broken.stat().st_size // 2)  # header intact: only reading its pixels fails
    summary = build_index(params(tmp_path / "idx", [*good, broken], tiny_model, dask="local"))
    assert summary.rasters_indexed == 3 and summary.tiles_total == 48 and summary.tiles_indexed == 48
    [(path, reason)] = summary.failed
    assert path == str(broken.resolve()) and "cannot be read" in reason and "\n" not in reason
    with IndexReader(tmp_path / "idx") as reader:
        assert {raster.path for raster in reader.rasters.values()} == {str(p.resolve()) for p in good}


def test_a_cancelled_build_stops_its_workers_and_the_next_build_reuses_what_they_finished(
        tmp_path, tiny_model, town_crop):
    import psutil

    rasters = copies(tmp_path, town_crop, 3)
    index = tmp_path / "idx"
    with pytest.raises(BuildCancelled, match="the previous index is unchanged"):
        build_index(params(index, rasters, tiny_model, dask="local"),
                    is_cancelled=lambda: len(list((index / "shards").glob("*.npz"))) >= 1)
    assert not (index / MANIFEST).exists()
    workers = [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    assert workers == []  # the LocalCluster was closed
    resumed = build_index(params(index, rasters, tiny_model))
    assert resumed.rasters_resumed >= 1 and resumed.rasters_indexed >= 1 and resumed.tiles_total == 48


KILL_SCRIPT = """
import json, os, signal, sys
from pathlib import Path
import psutil
from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, TilingParams
index, model, *rasters = sys.argv[1:]
shards = Path(index) / "shards"
def progress(percent, message):
    # Die the hard way once a worker has saved the first new raster's shard, mid-way through the build.
    if len(list(shards.glob("*.npz"))) >= 2:
        children = [p.pid for p in psutil.Process().children(recursive=True)]
        (Path(index).parent / "workers.json").write_text(json.dumps(children))
        os.kill(os.getpid(), signal.SIGKILL)
build_index(BuildParams(index_dir=index, rasters=tuple(rasters), model_path=model, dask="local",
                        tiling=TilingParams(tile_px=96, stride_px=96), batch_size=4), progress)
"""


def test_a_client_killed_mid_build_keeps_the_index_and_the_next_build_resumes_the_workers_shards(
        tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    build_index(params(index, [town_crop], tiny_model))
    before = json.loads((index / MANIFEST).read_text())
    rasters = [str(p) for p in copies(tmp_path, town_crop, 3)]
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(index), str(tiny_model), *rasters],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((index / MANIFEST).read_text()) == before
    with IndexReader(index) as reader:  # the previous generation is intact and searchable
        assert reader.size == 16 and len(reader.search(np.ones(512, np.float32) / np.sqrt(512), 5)[1]) == 5
    workers = json.loads((tmp_path / "workers.json").read_text())
    assert len(workers) >= 2  # the LocalCluster's worker processes
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "worker processes outlived their killed client"
    resumed = build_index(params(index, [Path(r) for r in rasters], tiny_model))
    # Killed mid-build: some rasters were finished by the workers, some not.
    assert resumed.rasters_resumed >= 1 and resumed.rasters_indexed >= 1 and resumed.rasters_unchanged == 1
    assert resumed.tiles_indexed == 16 * (3 - resumed.rasters_resumed)
    assert resumed.tiles_total == 64 and resumed.failed == []


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_unreachable_scheduler_is_one_line_from_the_cli(tmp_path, tiny_model, town_crop, capsys,
                                                          monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(rsir_distributed, "CONNECT_TIMEOUT_S", 1)
    code = cli.main(["index", "build", str(tmp_path / "idx"), str(town_crop), "--model", str(tiny_model),
                     "--dask", address])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith(f"rsir: error: cannot reach the Dask scheduler at {address}") and "\n" not in err
    assert not (tmp_path / "idx" / MANIFEST).exists()


def test_without_distributed_the_build_says_which_packages_to_install(tmp_path, tiny_model, town_crop,
                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"missing Python package\(s\): dask, distributed"):
        build_index(params(tmp_path / "idx", [town_crop], tiny_model, dask="local"))
