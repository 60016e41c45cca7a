"""Builds on a real dask.distributed LocalCluster (2 worker processes): same index as a local build,
failures on workers reported, a killed client loses nothing the workers finished. Then on a real
cluster of `dask scheduler` and `dask worker` processes running a pip-installed rsir: the same index,
a worker killed mid-build loses nothing, and a scheduler or worker without rsir is one line."""
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

pytestmark = pytest.mark.slow  # Dask clusters of worker processes
pytest.importorskip("distributed")

from rsir_qgis_plugin import cli  # noqa: E402
from rsir_qgis_plugin.core import distributed as rsir_distributed  # noqa: E402
from rsir_qgis_plugin.core.atomic import is_temporary  # noqa: E402
from rsir_qgis_plugin.core.builder import build_index  # noqa: E402
from rsir_qgis_plugin.core.errors import BuildCancelled, BuildFailed, MissingDependencyError  # noqa: E402
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


def finished_shards(index_dir):
    """Shards a worker has renamed into place (not the temporary file it is still writing)."""
    return [p for p in (Path(index_dir) / "shards").glob("*.npz") if not is_temporary(p)]


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
    # Where inference ran is the workers' sessions, not the client's probe.
    assert "tiles/s on Dask workers: CPU" in out.out
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

    # Eight rasters for two workers: with the tiny model, three could all be done before the cancel lands.
    rasters = copies(tmp_path, town_crop, 8)
    index = tmp_path / "idx"
    with pytest.raises(BuildCancelled, match="the previous index is unchanged"):
        build_index(params(index, rasters, tiny_model, dask="local"),
                    is_cancelled=lambda: len(finished_shards(index)) >= 1)
    assert not (index / MANIFEST).exists()
    workers = [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    assert workers == []  # the LocalCluster was closed
    resumed = build_index(params(index, rasters, tiny_model))
    assert resumed.rasters_resumed >= 1 and resumed.rasters_indexed >= 1 and resumed.tiles_total == 8 * 16


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


# --- a real cluster: `dask scheduler` and `dask worker` processes on 127.0.0.1, rsir pip-installed --------
# They run from the venv of tests/installed.py (rsir installed with pip, no PYTHONPATH, working folders
# outside the checkout), started as `python -m distributed.cli.dask_scheduler` / `dask_worker`, which is
# what the `dask scheduler` / `dask worker` commands run. Workers run without a nanny, so killing one
# process kills that worker.

CLUSTER_WAIT_S = 60  # bound on every wait for the cluster's processes


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """A scheduler and workers as subprocesses; close() kills every one of them."""

    def __init__(self, home: Path):
        self.home = home
        self.processes: list[subprocess.Popen] = []
        self.address = ""
        home.mkdir()

    def _start(self, bin_dir: Path, module: str, name: str, *args) -> subprocess.Popen:
        from tests.installed import clean_env

        log = (self.home / f"{name}.log").open("w")
        command = [str(bin_dir / "python"), "-m", f"distributed.cli.{module}", *map(str, args)]
        process = subprocess.Popen(command, cwd=self.home, env=clean_env(), stdout=log,
                                   stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def scheduler(self, bin_dir: Path) -> str:
        port = free_port()
        self._start(bin_dir, "dask_scheduler", "scheduler", "--host", "127.0.0.1", "--port", port,
                    "--no-dashboard")
        self.address = f"tcp://127.0.0.1:{port}"
        return self.address

    def worker(self, bin_dir: Path, name: str) -> subprocess.Popen:
        return self._start(bin_dir, "dask_worker", name, self.address, "--name", name, "--no-nanny",
                           "--nthreads", 1, "--no-dashboard", "--death-timeout", CLUSTER_WAIT_S,
                           "--local-directory", self.home / name)

    def wait_for_workers(self, n: int) -> None:
        import distributed

        try:
            with distributed.Client(self.address, timeout=CLUSTER_WAIT_S, set_as_default=False) as client:
                client.wait_for_workers(n, timeout=CLUSTER_WAIT_S)
        except (OSError, TimeoutError) as exc:
            logs = "\n".join(f"{log.name}: {log.read_text()[-2000:]}" for log in self.home.glob("*.log"))
            raise AssertionError(f"the cluster at {self.address} has no {n} workers: {exc}\n{logs}") from exc

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait(timeout=CLUSTER_WAIT_S)


@pytest.fixture
def cluster(tmp_path):
    started = Cluster(tmp_path / "cluster")
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def installed(tmp_path_factory) -> Path:
    from tests.installed import installed_rsir

    return installed_rsir(tmp_path_factory)


def crops(folder: Path, n: int) -> list[Path]:
    """n real 384x384 rasters cut from different places of the town sample (25 tiles each at 128 px)."""
    from rasterio.windows import Window, transform

    from tests.conftest import town_pixels, write_raster

    pixels, profile = town_pixels()
    folder.mkdir(exist_ok=True)
    corners = [(256, 512), (320, 64), (640, 320), (576, 640), (128, 192), (448, 448)][:n]
    return [write_raster(folder / f"crop{i}.tif", pixels[:, row:row + 384, col:col + 384].copy(),
                         crs=profile["crs"],
                         transform=transform(Window(col, row, 384, 384), profile["transform"]))
            for i, (row, col) in enumerate(corners)]


def rsir(bin_dir: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    from tests.installed import clean_env

    return subprocess.run([str(bin_dir / "rsir"), *map(str, args)], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=300)


def test_a_build_on_a_dask_scheduler_with_two_worker_processes_gives_the_same_index_as_a_local_build(
        tmp_path, installed, cluster):
    rasters = crops(tmp_path / "rasters", 2)
    address = cluster.scheduler(installed)
    cluster.worker(installed, "w0")
    cluster.worker(installed, "w1")
    cluster.wait_for_workers(2)
    local = rsir(installed, tmp_path, "index", "build", tmp_path / "local", *rasters)
    assert local.returncode == 0, local.stderr
    started = time.perf_counter()
    built = rsir(installed, tmp_path, "index", "build", tmp_path / "dask", *rasters, "--dask", address)
    assert built.returncode == 0, built.stderr
    print(f"build on the cluster: {time.perf_counter() - started:.1f} s")
    assert "embedded 50 tiles from 2 raster(s)" in built.stdout, built.stdout
    local_tiles, local_vectors = contents(tmp_path / "local")
    dask_tiles, dask_vectors = contents(tmp_path / "dask")
    assert len(local_tiles) >= 40 and dask_tiles == local_tiles
    assert dask_vectors.shape == local_vectors.shape and np.array_equal(dask_vectors, local_vectors)


def test_a_worker_killed_mid_build_loses_nothing(tmp_path, installed, cluster):
    rasters = crops(tmp_path / "rasters", 6)
    local = rsir(installed, tmp_path, "index", "build", tmp_path / "local", *rasters)
    assert local.returncode == 0, local.stderr
    address = cluster.scheduler(installed)
    doomed = cluster.worker(installed, "w0")
    cluster.worker(installed, "w1")
    cluster.wait_for_workers(2)
    from tests.installed import clean_env

    index = tmp_path / "dask"
    command = [str(installed / "rsir"), "index", "build", str(index), *map(str, rasters), "--dask", address]
    build = subprocess.Popen(command, cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        doomed_task = _kill_while_it_works(cluster, doomed, "w0", index / "shards", build)
        out, err = build.communicate(timeout=300)
    finally:
        if build.poll() is None:
            build.kill()
    assert doomed.wait(timeout=10) == -signal.SIGKILL
    assert doomed_task.startswith("rsir-embed-")
    if build.returncode == 3:  # the cluster gave up on some rasters: each named, the rest committed
        assert "failed on a Dask worker" in out
        missing = [str(r.resolve()) for r in rasters if f"{r.resolve()}: failed" in out]
        assert missing
        rebuilt = rsir(installed, tmp_path, "index", "build", index, *rasters, "--dask", address)
        assert rebuilt.returncode == 0, rebuilt.stderr
    else:
        assert build.returncode == 0, err
        assert "6 raster(s)" in out and "failed" not in out
    local_tiles, local_vectors = contents(tmp_path / "local")
    dask_tiles, dask_vectors = contents(index)
    assert sorted(dask_tiles) == sorted(local_tiles)
    order = np.argsort([str(tile) for tile in dask_tiles])
    assert np.array_equal(dask_vectors[order], local_vectors[np.argsort([str(tile) for tile in local_tiles])])



def test_a_build_whose_last_worker_dies_is_one_line_and_the_next_build_resumes(tmp_path, installed, cluster,
                                                                               capsys):
    rasters = crops(tmp_path / "rasters", 3)
    address = cluster.scheduler(installed)
    only = cluster.worker(installed, "w0")
    cluster.wait_for_workers(1)
    index = tmp_path / "idx"
    killer, killed = kill_in_background(cluster, only, "w0", index / "shards")
    code = cli.main(["index", "build", str(index), *map(str, rasters), "--dask", address])
    killer.join(timeout=CLUSTER_WAIT_S)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert killed and code == 1
    assert err == (f"rsir: error: the Dask cluster at {address} lost all its workers; the rasters finished "
                   f"so far will be reused by the next build")
    assert not (index / MANIFEST).exists()
    cluster.worker(installed, "w1")
    cluster.wait_for_workers(1)
    resumed = rsir(installed, tmp_path, "index", "build", index, *rasters, "--dask", address)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout and ", 0 resumed" not in resumed.stdout, resumed.stdout
    local = rsir(installed, tmp_path, "index", "build", tmp_path / "local", *rasters)
    assert local.returncode == 0, local.stderr
    assert contents(index)[0] == contents(tmp_path / "local")[0]

def kill_in_background(cluster: Cluster, worker: subprocess.Popen, name: str, shards: Path):
    """(the thread, the list it puts the killed task's key in) of _kill_while_it_works, started."""
    import threading

    killed: list[str] = []
    killer = threading.Thread(target=lambda: killed.append(_kill_while_it_works(cluster, worker, name, shards, None)),
                              daemon=True)
    killer.start()
    return killer, killed


def _kill_while_it_works(cluster: Cluster, worker: subprocess.Popen, name: str, shards: Path,
                         build: subprocess.Popen | None) -> str:
    """SIGKILL the worker `name` once some raster is saved and it is embedding another; that task's key."""
    import distributed

    deadline = time.monotonic() + CLUSTER_WAIT_S
    with distributed.Client(cluster.address, timeout=CLUSTER_WAIT_S, set_as_default=False) as client:
        while True:
            assert build is None or build.poll() is None, build.communicate()
            assert time.monotonic() < deadline, "the build never had a raster saved and another in work"
            # A shard is saved once renamed from its temporary name (".<name>.<random>.tmp.npz"), which
            # the glob matches too: killing then would leave no shard to resume.
            saved = [p for p in shards.glob("*.npz") if ".partial." not in p.name and not is_temporary(p)]
            workers = client.scheduler_info(n_workers=-1)["workers"]
            address = next((a for a, w in workers.items() if w.get("name") == name), None)
            if address is None:  # not (or no longer) listed: a loaded machine may report it late
                assert worker.poll() is None, f"worker {name} exited with status {worker.returncode}"
                time.sleep(0.05)
                continue
            busy = client.processing([address]).get(address, [])
            if saved and busy:
                worker.kill()
                return busy[0]
            time.sleep(0.05)


# --- one raster larger than a block, spread over the cluster (core/blocks.py) ------------------------------
# The client is this process (BuildParams.block_tiles has no command-line flag); the workers run the
# pip-installed rsir.

def chunked_town(index_dir: Path, model: Path, **changes) -> BuildParams:
    """The 1024 px town raster in 96 px tiles at a 48 px stride: 441 windows, 8 blocks of up to 64."""
    return BuildParams(index_dir=index_dir, rasters=(TOWN_RASTER,), model_path=model,
                       tiling=TilingParams(tile_px=96, stride_px=48), batch_size=8, block_tiles=64, **changes)


def ids_and_vectors(index_dir: Path) -> tuple[list, np.ndarray]:
    with IndexReader(index_dir) as reader:
        tiles, vectors = [], []
        for batch, batch_vectors in reader.iter_tiles():
            tiles += [(t.id, t.raster.path, t.window) for t in batch]
            vectors.append(batch_vectors)
        return tiles, np.concatenate(vectors)


def test_a_raster_larger_than_a_block_is_spread_over_the_workers_and_equals_the_local_build(
        tmp_path, tiny_model, installed, cluster):
    address = cluster.scheduler(installed)
    cluster.worker(installed, "w0")
    cluster.worker(installed, "w1")
    cluster.wait_for_workers(2)
    local = build_index(chunked_town(tmp_path / "local", tiny_model))
    messages = []
    built = build_index(chunked_town(tmp_path / "dask", tiny_model, dask=address),
                        progress=lambda percent, message: messages.append(message))
    assert built.rasters_indexed == 1 and built.tiles_total == local.tiles_total > 300
    assert any(message.startswith("441/441 tiles, 8/8 blocks done on Dask") for message in messages), messages
    # Both workers embedded blocks of the one raster: each made its model session (from the model's
    # files written into its own local directory), which a worker does on its first task.
    for name in ("w0", "w1"):
        assert list((cluster.home / name).glob("**/rsir-model-*/*.onnx")), f"worker {name} ran no block"
    local_tiles, local_vectors = ids_and_vectors(tmp_path / "local")
    dask_tiles, dask_vectors = ids_and_vectors(tmp_path / "dask")
    assert dask_tiles == local_tiles
    np.testing.assert_allclose(dask_vectors, local_vectors, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "dask" / "shards").iterdir()) == sorted(
        p.name for p in (tmp_path / "local" / "shards").iterdir())  # one raster shard, no block left


def test_a_worker_killed_mid_block_loses_nothing(tmp_path, tiny_model, installed, cluster):
    local = build_index(chunked_town(tmp_path / "local", tiny_model))
    address = cluster.scheduler(installed)
    doomed = cluster.worker(installed, "w0")
    cluster.worker(installed, "w1")
    cluster.wait_for_workers(2)
    index = tmp_path / "dask"
    killer, killed = kill_in_background(cluster, doomed, "w0", index / "shards")
    try:
        built = build_index(chunked_town(index, tiny_model, dask=address))
    except BuildFailed as exc:  # the scheduler gave up on the block: the raster is named, the blocks kept
        assert "failed on a Dask worker" in str(exc)
        built = build_index(chunked_town(index, tiny_model, dask=address))
    killer.join(timeout=CLUSTER_WAIT_S)
    assert killed and ".block-" in killed[0]  # killed while it embedded a block of the raster
    assert doomed.wait(timeout=10) == -signal.SIGKILL
    assert built.tiles_total == local.tiles_total and built.failed == []
    local_tiles, local_vectors = ids_and_vectors(tmp_path / "local")
    dask_tiles, dask_vectors = ids_and_vectors(index)
    assert dask_tiles == local_tiles
    np.testing.assert_allclose(dask_vectors, local_vectors, atol=1e-5)


def test_a_scheduler_or_a_worker_that_cannot_import_rsir_is_one_line_naming_the_host(
        tmp_path_factory, tmp_path, installed, cluster):
    from tests.installed import plain_python

    plain = plain_python(tmp_path_factory)
    [raster] = crops(tmp_path / "rasters", 1)
    address = cluster.scheduler(plain)  # a scheduler without rsir, its workers with it
    cluster.worker(installed, "w0")
    cluster.wait_for_workers(1)
    refused_build(installed, tmp_path, raster, address,
                  f"the Dask scheduler at {address} (host 127.0.0.1) cannot import rsir (No module named "
                  f"'rsir_qgis_plugin')")
    cluster.close()

    address = cluster.scheduler(installed)  # now the scheduler has rsir and one of two workers has not
    cluster.worker(installed, "w1")
    cluster.worker(plain, "w2")
    cluster.wait_for_workers(2)
    refused_build(installed, tmp_path, raster, address,
                  f"1 of 2 Dask worker(s) of {address} cannot import rsir (on host 127.0.0.1: No module "
                  f"named 'rsir_qgis_plugin')")


def refused_build(installed, tmp_path, raster, address, problem):
    """`rsir index build --dask ADDRESS` exits 1 with one line, the problem and the install hint, and
    leaves no index."""
    refused = rsir(installed, tmp_path, "index", "build", tmp_path / "idx", raster, "--dask", address)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"rsir: error: {problem}: {rsir_distributed.INSTALL_HINT}"
    assert not (tmp_path / "idx" / MANIFEST).exists()
