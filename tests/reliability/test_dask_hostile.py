"""Dask builds under hostile conditions (issue 20, item 17): a scheduler that accepts and never answers, a
malformed address, Ctrl-C at the client, workers killed mid-build, GDAL errors on workers, a model with
external data. Real `--dask local` clusters (worker processes on this machine), a real TCP listener on
127.0.0.1, the real command line in a child process."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # Dask clusters of worker processes
pytest.importorskip("distributed")

from rsir_qgis_plugin.core.distributed import CONNECT_TIMEOUT_S  # noqa: E402
from rsir_qgis_plugin.core.store import IndexReader  # noqa: E402
from tests.conftest import TOWN_RASTER  # noqa: E402

from .conftest import ROOT, one_line_error, run_cli  # noqa: E402

WAIT_S = 120  # bound on every wait for a build's processes
INTERRUPTED = "rsir: interrupted; the previous index is unchanged, run the build again to resume"


@pytest.fixture
def deaf_scheduler():
    """A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_scheduler_that_never_answers_is_one_line_after_the_promised_wait(tmp_path, tiny_model, town_crop,
                                                                           deaf_scheduler):
    started = time.monotonic()
    done = run_cli("index", "build", tmp_path / "idx", town_crop, "--model", tiny_model, "--dask", deaf_scheduler,
                   timeout=90)  # it hung for good: distributed's handshake has no time limit
    seconds = time.monotonic() - started
    one_line_error(done, f"cannot reach the Dask scheduler at {deaf_scheduler} "
                         f"(no answer within {CONNECT_TIMEOUT_S} s)")
    assert seconds < CONNECT_TIMEOUT_S + 30, seconds  # the rest is starting Python and probing the model


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:notaport", "foo://bar", ":::"])
def test_a_malformed_scheduler_address_is_one_line(tmp_path, tiny_model, town_crop, address):
    done = run_cli("index", "build", tmp_path / "idx", town_crop, "--model", tiny_model, "--dask", address,
                   timeout=60)
    one_line_error(done, f"'{address}' is not a Dask scheduler address")


def copies(folder: Path, raster: Path, n: int) -> list[Path]:
    return [Path(shutil.copy(raster, folder / f"copy{i}.tif")) for i in range(n)]


def start_build(index: Path, rasters: list[Path], model: Path, *extra) -> subprocess.Popen:
    """`rsir index build --dask local` in its own session, as a terminal's foreground job would be."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "rsir_qgis_plugin", "index", "build", str(index), *map(str, rasters),
               "--model", str(model), "--tile-size", "16", "--stride", "16", "--dask", "local", *extra]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def workers_of(build: subprocess.Popen) -> list:
    import psutil

    try:
        children = psutil.Process(build.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if "spawn_main" in " ".join(_cmdline(child))]


def _cmdline(process) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:
        return []


def wait_until(build: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        assert build.poll() is None, f"the build ended before {what}: {build.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S} s"
        time.sleep(0.05)


def embedding(build: subprocess.Popen, index: Path) -> bool:
    """Two workers up, a raster finished and others in work (4 rasters of 576 windows on 2 workers)."""
    return len(workers_of(build)) == 2 and any(
        not p.name.endswith(".partial.npz") for p in (index / "shards").glob("*.npz"))


def finish(build: subprocess.Popen) -> tuple[str, str]:
    try:
        return build.communicate(timeout=WAIT_S)
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait()


@pytest.mark.parametrize("moment, group", [("starting", True), ("embedding", True), ("workers up", False),
                                           ("embedding", False)],
                         ids=["ctrl-c-while-the-cluster-starts", "ctrl-c-while-embedding",
                              "sigint-to-the-client-once-workers-are-up", "sigint-to-the-client-while-embedding"])
def test_ctrl_c_at_a_dask_local_build_is_one_line_and_exit_130(tmp_path, tiny_model, town_crop, moment, group):
    """A terminal's Ctrl-C reaches the whole process group, workers included; `kill -INT` the client only.
    Both printed tracebacks of distributed ("IOLoop is closed", KeyboardInterrupt in the workers)."""
    index = tmp_path / "idx"
    build = start_build(index, copies(tmp_path, town_crop, 4), tiny_model)
    if moment == "starting":
        wait_until(build, lambda: len(workers_of(build)) >= 1, "worker process")
    elif moment == "workers up":
        wait_until(build, lambda: len(workers_of(build)) == 2, "two worker processes")
        time.sleep(1.5)  # the workers load the model and take their first tasks
    else:
        wait_until(build, lambda: embedding(build, index), "raster finished with others in work")
    workers = workers_of(build)
    if group:
        os.killpg(build.pid, signal.SIGINT)
    else:
        build.send_signal(signal.SIGINT)
    out, err = finish(build)
    assert build.returncode == 130, err
    assert err.strip() == INTERRUPTED, err
    deadline = time.monotonic() + 30
    while any(worker.is_running() and worker.status() != "zombie" for worker in workers):
        assert time.monotonic() < deadline, "worker processes outlived their interrupted client"
        time.sleep(0.1)


def test_workers_killed_mid_build_leave_only_rsirs_lines(tmp_path, tiny_model, town_crop):
    """Killing both workers of a local cluster printed distributed's scheduler ERROR lines before rsir's."""
    index = tmp_path / "idx"
    build = start_build(index, copies(tmp_path, town_crop, 4), tiny_model)
    wait_until(build, lambda: embedding(build, index), "raster finished with others in work")
    for worker in workers_of(build):
        worker.kill()
    out, err = finish(build)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("rsir: ") for line in lines), err
    if build.returncode == 1:  # the cluster lost the model's data with the workers: one line says so
        assert len(lines) == 1 and "lost all its workers" in lines[0], err
    else:  # the nannies restarted the workers in time: the build finished, naming what failed if any
        assert build.returncode in (0, 3), err


def test_gdal_errors_on_workers_go_into_the_rasters_failure_line(tmp_path, tiny_model, town_crop):
    broken = Path(shutil.copy(TOWN_RASTER, tmp_path / "half.tif"))
    os.truncate(broken, broken.stat().st_size // 2)  # header intact: only reading its pixels fails
    done = run_cli("index", "build", tmp_path / "idx", town_crop, broken, "--model", tiny_model,
                   "--tile-size", 96, "--stride", 96, "--dask", "local", timeout=WAIT_S)
    assert done.returncode == 3, done.stderr
    assert "ERROR 1" not in done.stderr and "ERROR 1" not in done.stdout, done.stderr
    assert f"{broken.resolve()}: pixels in window" in done.stdout and "cannot be read" in done.stdout
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        line for line in done.stderr.splitlines() if line.startswith("rsir: warning: 1 raster(s) failed")]


def test_a_model_with_external_data_is_sent_to_the_workers_whole(tmp_path, town_crop):
    from tests.reliability.test_models_hostile import external_model

    model = external_model(tmp_path)
    local = run_cli("index", "build", tmp_path / "local", town_crop, "--model", model, "--tile-size", 96,
                    "--stride", 96)
    assert local.returncode == 0, local.stderr
    done = run_cli("index", "build", tmp_path / "dask", town_crop, "--model", model, "--tile-size", 96,
                   "--stride", 96, "--dask", "local", timeout=WAIT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    with IndexReader(tmp_path / "dask") as dask, IndexReader(tmp_path / "local") as plain:
        assert dask.size == plain.size == 16
