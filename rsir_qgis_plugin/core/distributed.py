"""Embedding rasters on a Dask cluster: one task per block of a raster's windows (core/blocks.py; a raster
of up to BuildParams.block_tiles windows is one block), each worker with its own onnxruntime session, so one
huge raster spreads over every worker.

    embed_on_dask(jobs, ...)    the client: submits the jobs, yields each block as it finishes
    embed_on_worker(job, ...)   the task (core/dask_worker.py): jobs.embed_jobs on one job; the
                                worker saves the block's shard

Workers write each finished shard (and the checkpoints inside a large raster) straight into the
index folder, which the client and every worker must see at the same path, as they must see the
rasters; a task returns only its counts and the client reads the shard back from that path. So a
client killed mid-build loses nothing a worker finished: the next build resumes those shards. A worker
lost mid-task costs that block: Dask runs the task again on another worker, which resumes from the
block's last checkpoint.
The commit stays with the client (builder.build_index), under its writer lock.

The scheduling is Dask's own: `local` starts a LocalCluster of worker processes on this machine,
any other value is the address of a running scheduler.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from .dask_worker import WorkerSettings, embed_on_worker
from .errors import BuildCancelled, MissingDependencyError, RsirError
from .jobs import Job, JobCounts
from .model import ModelInfo, external_data_files
from .params import BuildParams
from .store import Shard, ShardError, shard_path

LOCAL = "local"
LOCAL_WORKERS = 2  # worker processes of `--dask local`, one task thread each
CONNECT_TIMEOUT_S = 5  # a scheduler that does not answer within this is reported unreachable
WORKER_WAIT_S = 30  # how long a reachable scheduler may take to have a worker
POLL_S = 0.2  # how often the client looks at cancellation and progress while tasks run
IMPORT_PROBE = "import rsir_qgis_plugin.core.distributed"  # run on the scheduler and each worker first
INSTALL_HINT = "install rsir with pip (pip install PATH_TO_RSIR) on the scheduler and on every worker"
# distributed logs each lost worker, lost data and closed link as ERROR lines and tracebacks; rsir
# reports what a user must know (a raster failed, the cluster was lost) in one line of its own.
LIBRARY_LOG_LEVEL = logging.CRITICAL + 1


class ClusterError(RsirError):
    """A Dask cluster cannot be used: scheduler unreachable, no workers, workers without rsir, lost."""


def embed_on_dask(jobs: list[Job], model: ModelInfo, params: BuildParams, index_dir: Path, counts: JobCounts,
                  progress: Callable[[float, str], None], is_cancelled: Callable[[], bool]
                  ) -> Iterator[tuple[Job, Shard | None, str | None]]:
    """Yield (job, shard, error) as each job (a block) finishes on a worker, like jobs.embed_jobs.

    Unlike there, each shard is already saved at shard_path(index_dir, job.key) by its worker.
    """
    distributed = _import_distributed()
    if params.dask == LOCAL and hasattr(signal, "pthread_sigmask"):
        # Started now, not at the first worker's spawn: starting it unblocks SIGINT in the spawning
        # thread, which would undo _sigint_held for the workers.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    cluster = client = None
    with _library_logs_silenced():
        try:
            with _sigint_held():  # a cluster half started is closed again at exit, with a traceback
                cluster, client = _connect(distributed, params.dask)
            _check_workers(client, params.dask)
            yield from _run_tasks(distributed, client, jobs, model, params, index_dir, counts, progress,
                                  is_cancelled)
        finally:
            if client is not None:
                with _sigint_held():
                    _close(cluster, client)


def _run_tasks(distributed, client, jobs: list[Job], model: ModelInfo, params: BuildParams, index_dir: Path,
               counts: JobCounts, progress: Callable[[float, str], None], is_cancelled: Callable[[], bool]
               ) -> Iterator[tuple[Job, Shard | None, str | None]]:
    """Submit one task per job (a block of a raster) and yield each outcome as it finishes."""
    token = uuid.uuid4().hex[:12]
    cancel = distributed.Event(f"rsir-cancel-{token}", client=client)
    windows = {job.key: len(job.windows) - job.start for job in jobs}
    total = sum(windows.values()) or 1
    percents: dict[str, float] = {}  # job key -> percent embedded, reported by the workers
    settings = WorkerSettings(device=params.device, tta=params.tta, batch_size=params.batch_size,
                         host_threads=_threads_per_host(client), topic=f"rsir-progress-{token}",
                         cancel=cancel.name)
    client.subscribe_topic(settings.topic, lambda event: _note_progress(percents, *event[1]))
    where = _describe_cluster(client, params.dask)
    # The model travels as bytes (with its external-data files): a remote worker's copy of rsir (and of
    # the bundled model) may lie elsewhere. Every worker gets a copy now (workers that join later fetch
    # one from them), so losing a worker does not lose the model and, with it, every task still to run.
    model_files = client.scatter(_model_files(model), hash=False, broadcast=True)
    futures = {}
    # Largest jobs first, so the cluster is not left waiting on one big raster at the end (a raster's blocks,
    # of equal size, stay in order: the client joins each raster's blocks as soon as it can).
    for job in sorted(jobs, key=lambda j: -windows[j.key]):
        future = client.submit(embed_on_worker, _without_checkpoint(job), model, model_files, settings,
                               str(index_dir), key=f"rsir-embed-{job.key}-{token}", pure=False)
        futures[future] = job
    pending, finished, reported = set(futures), 0, None
    while pending:
        if is_cancelled():
            cancel.set()
            client.cancel(list(pending))
            raise BuildCancelled(f"{index_dir}: build cancelled; the previous index is unchanged and "
                                 f"the rasters the workers finished will be reused by the next build")
        for future in _wait_some(distributed, client, pending, params.dask):
            pending.discard(future)
            job = futures[future]
            percents[job.key] = 100.0
            finished += 1
            yield _outcome(future, job, model, index_dir, counts)
        done = sum(windows[key] * min(percent, 100.0) / 100.0 for key, percent in list(percents.items()))
        if (round(done), finished) != reported:
            reported = round(done), finished
            progress(min(98.0, 100.0 * done / total),
                     f"{round(done)}/{total} tiles, {finished}/{len(jobs)} blocks done on Dask ({where})")


def _model_files(model: ModelInfo) -> dict[str, bytes]:
    """The model file and its external-data files, by their paths relative to the model's folder."""
    folder = Path(model.path).parent
    files = {Path(model.path).name: Path(model.path).read_bytes()}
    for path in external_data_files(model):
        files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


@contextlib.contextmanager
def _library_logs_silenced() -> Iterator[None]:
    """distributed's own log lines (in this process: the client, and a local cluster's scheduler and
    nannies) held back while a build uses the cluster; rsir reports each event in one line."""
    library = logging.getLogger("distributed")
    handlers = [handler for handler in library.handlers if isinstance(handler, logging.StreamHandler)]
    saved = [handler.level for handler in handlers], library.propagate
    for handler in handlers:
        handler.setLevel(LIBRARY_LOG_LEVEL)
    library.propagate = False  # nor through the root logger's handlers (a QGIS or notebook console)
    try:
        yield
    finally:
        for handler, level in zip(handlers, saved[0]):
            handler.setLevel(level)
        library.propagate = saved[1]


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) while a cluster starts or closes; it is raised right after.

    Interrupted inside LocalCluster() or Client.close(), distributed leaves objects that its exit
    handlers close again once the event loop is gone, printing "IOLoop is closed" and assertion
    tracebacks after rsir's own line. Python runs signal handlers in the main thread, whichever thread
    the signal reaches, so the main thread's handler only notes it meanwhile. The signal is also blocked
    in this thread, so threads started meanwhile inherit it blocked for good: the cluster's event loop
    and the worker processes it spawns, at start and on restart. A Ctrl-C at the terminal, which
    reaches the whole process group, then interrupts the client alone, which closes the workers,
    instead of each worker printing its own KeyboardInterrupt traceback.
    """
    caught: list[int] = []
    handler = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not None:
        handler = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
        if caught:
            raise KeyboardInterrupt


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(["dask", "distributed"], f"import failed: {exc}; pip install dask "
                                     "distributed (versions in constraints.txt) to build on a Dask cluster"
                                     ) from exc
    return distributed


def _connect(distributed, address: str | None):
    """(cluster or None, client): a LocalCluster of worker processes for 'local', else the scheduler's."""
    if address == LOCAL:
        # Worker processes are spawned with this process's sys.path (multiprocessing's spawn
        # passes it on), so they import rsir from wherever the client did, a checkout included.
        try:
            cluster = distributed.LocalCluster(n_workers=LOCAL_WORKERS, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=LIBRARY_LOG_LEVEL)
        except Exception as exc:  # a worker process that cannot start raises whatever it met
            raise ClusterError(f"cannot start a local Dask cluster ({_first_line(exc)})") from exc
        return cluster, distributed.Client(cluster, set_as_default=False)
    _probe_scheduler(address)
    try:
        return None, distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({_first_line(exc)}); start one "
                           f"(dask scheduler) or build with --dask local") from exc


def _probe_scheduler(address: str) -> None:
    """Refuse a malformed address, or a scheduler that does not answer within CONNECT_TIMEOUT_S.

    distributed's Client waits for the scheduler's handshake without a time limit (a listener that
    accepts and never answers hangs it for good), and a Client that failed to start blocks 10 s more
    at exit, closing itself, with a traceback. So the handshake is tried here first, bounded, in a
    thread with its own event loop (the caller's thread may be running one).
    """
    import asyncio

    from distributed.comm import connect

    async def handshake() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=CONNECT_TIMEOUT_S), CONNECT_TIMEOUT_S)
        await comm.close()

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(handshake())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="rsir-dask-probe", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 5)
    problem = outcome[0] if outcome else (TimeoutError() if thread.is_alive() else None)
    if isinstance(problem, ValueError):
        raise ClusterError(f"'{address}' is not a Dask scheduler address ({_first_line(problem)}); give "
                           "tcp://HOST:PORT of a running scheduler, or local")
    if isinstance(problem, (OSError, TimeoutError, asyncio.TimeoutError)):
        raise ClusterError(f"cannot reach the Dask scheduler at {address} (no answer within {CONNECT_TIMEOUT_S} s); "
                           "start one (dask scheduler) or build with --dask local")
    if problem is not None:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({type(problem).__name__}: "
                           f"{_first_line(problem)})")


def _check_workers(client, address: str) -> None:
    """Refuse a cluster with no workers, or whose scheduler or workers cannot import rsir, before any task.

    The scheduler unpickles the task graph, which names rsir's task function: without rsir there it
    would fail every task with "Error during deserialization of the task graph".
    """
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except (TimeoutError, OSError) as exc:
        raise ClusterError(f"the Dask scheduler at {address} has no workers after {WORKER_WAIT_S} s "
                           f"(start some: dask worker {address})") from exc
    # exec with a fresh namespace: a builtin, so the probe itself needs nothing but Python there.
    try:
        client.run_on_scheduler(exec, IMPORT_PROBE, {})
    except OSError:  # the link itself: reported where the build waits on it
        raise
    except Exception as exc:  # ImportError, or whatever a broken install raises while importing
        raise ClusterError(f"the Dask scheduler at {address} (host {_host(client.scheduler.address)}) cannot "
                           f"import rsir ({_first_line(exc)}): {INSTALL_HINT}") from exc
    answers = client.run(exec, IMPORT_PROBE, {}, on_error="return")
    failed = {worker: exc for worker, exc in answers.items() if isinstance(exc, BaseException)}
    if failed:
        hosts = sorted({_host(worker) for worker in failed})
        raise ClusterError(f"{len(failed)} of {len(answers)} Dask worker(s) of {address} cannot import rsir "
                           f"(on host {', '.join(hosts)}: {_first_line(next(iter(failed.values())))}): "
                           f"{INSTALL_HINT}")


def _host(address: str) -> str:
    """'10.0.0.5' of 'tcp://10.0.0.5:8786'."""
    from distributed.comm import get_address_host

    try:
        return get_address_host(address)
    except (ValueError, TypeError):
        return address


def _threads_per_host(client) -> dict:
    hosts: dict[str, int] = {}
    for address, worker in client.scheduler_info(n_workers=-1)["workers"].items():
        host = worker.get("host") or address
        hosts[host] = hosts.get(host, 0) + int(worker.get("nthreads") or 1)
    return hosts


def _note_progress(percents: dict, key: str, percent: float) -> None:
    """Keep a raster's highest report: events may arrive after its task finished."""
    percents[key] = max(percents.get(key, 0.0), float(percent))


def _without_checkpoint(job: Job) -> Job:
    """The job as sent: the worker reads a checkpoint from the shared folder itself (it can be large)."""
    return dataclasses.replace(job, start=0, done=None)


def _wait_some(distributed, client, pending: set, address: str) -> set:
    """The futures that finished within POLL_S (maybe none)."""
    try:
        with client.as_current():  # this build's client, not whichever is the process's default
            return distributed.wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED").done
    except TimeoutError:
        return set()
    except distributed.client.FuturesCancelledError as exc:  # the scheduler lost them (restart, lost link)
        reason = f"dropped this build's tasks ({_first_line(exc).rstrip(':')})"
        with contextlib.suppress(OSError):  # the scheduler is gone too: the first reason stands
            reason = reason if client.nthreads() else "lost all its workers"  # their data went with them
        raise ClusterError(f"the Dask cluster at {address} {reason}; the rasters finished so far will be "
                           f"reused by the next build") from exc


def _outcome(future, job: Job, model: ModelInfo, index_dir: Path, counts: JobCounts):
    """(job, shard, error) for a finished task; its counts are added to `counts`."""
    if future.status == "error":
        exc = future.exception()
        return job, None, f"failed on a Dask worker ({type(exc).__name__}: {_first_line(exc)})"
    try:
        result = future.result()
    except Exception as exc:  # noqa: BLE001 - FutureCancelledError: the scheduler forgot the task with a lost worker
        return job, None, (f"failed on a Dask worker (its task was lost: {_first_line(exc)}); the next build "
                           "embeds it again")
    counts.indexed += result["indexed"]
    counts.skipped += result["skipped"]
    counts.non_finite += result["non_finite"]
    counts.where.update(result["where"])
    if result["error"] is not None:
        return job, None, result["error"]
    path = shard_path(index_dir, job.key)
    try:
        return job, Shard.load(path, model.contract.embedding_dim), None
    except ShardError as exc:
        return job, None, (f"the shard Dask worker {result['worker']} wrote cannot be read here ({exc}); "
                           f"the index folder must be on a path the client and every worker see")


def _describe_cluster(client, address: str) -> str:
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    return f"{workers} worker(s) {'on this machine' if address == LOCAL else 'at ' + address}"


def _close(cluster, client) -> None:
    try:
        client.close(timeout=CONNECT_TIMEOUT_S)
    finally:
        if cluster is not None:
            cluster.close(timeout=CONNECT_TIMEOUT_S)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
