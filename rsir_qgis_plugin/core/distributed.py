"""Embedding rasters on a Dask cluster: one task per raster, each worker with its own onnxruntime session.

    embed_on_dask(jobs, ...)    the client: submits the jobs, yields each raster as it finishes
    _embed_on_worker(job, ...)  the task: jobs.embed_jobs on a one-job list; the worker saves the shard

Workers write each finished shard (and the checkpoints inside a large raster) straight into the
index folder, which the client and every worker must see at the same path, as they must see the
rasters; a task returns only its counts and the client reads the shard back from that path. So a
client killed mid-build loses nothing a worker finished: the next build resumes those shards.
The commit stays with the client (builder.build_index), under its writer lock.

The scheduling is Dask's own: `local` starts a LocalCluster of worker processes on this machine,
any other value is the address of a running scheduler.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from .embedder import Embedder
from .errors import BuildCancelled, MissingDependencyError, RsirError
from .jobs import Job, JobCounts, embed_jobs, resumable
from .model import ModelInfo
from .params import BuildParams
from .store import Shard, ShardError, shard_path
from .store.files import os_error_message

LOCAL = "local"
LOCAL_WORKERS = 2  # worker processes of `--dask local`, one task thread each
CONNECT_TIMEOUT_S = 5  # a scheduler that does not answer within this is reported unreachable
WORKER_WAIT_S = 30  # how long a reachable scheduler may take to have a worker
POLL_S = 0.2  # how often the client looks at cancellation and progress while tasks run
WORKER_REPORT_S = 0.5  # how often a task reports progress and looks for a cancel
IMPORT_PROBE = "import rsir_qgis_plugin.core.distributed"  # run on the scheduler and each worker first
INSTALL_HINT = "install rsir with pip (pip install PATH_TO_RSIR) on the scheduler and on every worker"


class ClusterError(RsirError):
    """A Dask cluster cannot be used: scheduler unreachable, no workers, workers without rsir, lost."""


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What a task needs besides its job and the model (small, sent with every task)."""

    device: str
    tta: bool
    batch_size: int
    host_threads: dict  # host -> task threads of all its workers, to share the host's cores
    topic: str  # progress events go to this topic
    cancel: str  # name of the distributed.Event the client sets when it cancels


def embed_on_dask(jobs: list[Job], model: ModelInfo, params: BuildParams, index_dir: Path, counts: JobCounts,
                  progress: Callable[[float, str], None], is_cancelled: Callable[[], bool]
                  ) -> Iterator[tuple[Job, Shard | None, str | None]]:
    """Yield (job, shard, error) as each raster finishes on a worker, like jobs.embed_jobs.

    Unlike there, each shard is already saved at shard_path(index_dir, job.key) by its worker.
    """
    distributed = _import_distributed()
    cluster, client = _connect(distributed, params.dask)
    try:
        _check_workers(client, params.dask)
        token = uuid.uuid4().hex[:12]
        cancel = distributed.Event(f"rsir-cancel-{token}", client=client)
        windows = {job.key: len(job.windows) - job.start for job in jobs}
        total = sum(windows.values()) or 1
        percents: dict[str, float] = {}  # job key -> percent embedded, reported by the workers
        settings = _Settings(device=params.device, tta=params.tta, batch_size=params.batch_size,
                             host_threads=_threads_per_host(client), topic=f"rsir-progress-{token}",
                             cancel=cancel.name)
        client.subscribe_topic(settings.topic, lambda event: _note_progress(percents, *event[1]))
        where = _describe_cluster(client, params.dask)
        # The model travels as bytes: a remote worker's copy of rsir (and of the bundled model) may
        # lie elsewhere. Every worker gets a copy now (workers that join later fetch one from them), so
        # losing a worker does not lose the model and, with it, every task still to run.
        model_data = client.scatter(Path(model.path).read_bytes(), hash=False, broadcast=True)
        futures = {}
        # Largest rasters first, so the cluster is not left waiting on one big raster at the end.
        for job in sorted(jobs, key=lambda j: -windows[j.key]):
            future = client.submit(_embed_on_worker, _without_checkpoint(job), model, model_data, settings,
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
                         f"{round(done)}/{total} tiles, {finished}/{len(jobs)} rasters done on Dask "
                         f"({where})")
    finally:
        _close(cluster, client)


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
                                               dashboard_address=None, silence_logs=logging.ERROR)
        except Exception as exc:  # a worker process that cannot start raises whatever it met
            raise ClusterError(f"cannot start a local Dask cluster ({_first_line(exc)})") from exc
        return cluster, distributed.Client(cluster, set_as_default=False)
    try:
        return None, distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({_first_line(exc)}); start one "
                           f"(dask scheduler) or build with --dask local") from exc


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
        try:
            reason = reason if client.nthreads() else "lost all its workers"  # their data went with them
        except OSError:
            pass
        raise ClusterError(f"the Dask cluster at {address} {reason}; the rasters finished so far will be "
                           f"reused by the next build") from exc


def _outcome(future, job: Job, model: ModelInfo, index_dir: Path, counts: JobCounts):
    """(job, shard, error) for a finished task; its counts are added to `counts`."""
    if future.status == "error":
        exc = future.exception()
        return job, None, f"failed on a Dask worker ({type(exc).__name__}: {_first_line(exc)})"
    result = future.result()
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


# --- on the worker ---------------------------------------------------------------------------

_EMBEDDERS: dict[tuple, Embedder] = {}  # one session per model version, device and thread count
_EMBEDDERS_LOCK = threading.Lock()


def _embed_on_worker(job: Job, model: ModelInfo, model_data: bytes, settings: _Settings,
                     index_dir: str) -> dict:
    """Embed one raster on this worker and save its shard on the shared path; return the counts."""
    import distributed

    worker = distributed.get_worker()
    index_dir = Path(index_dir)
    counts = JobCounts()
    result = {"error": None, "worker": worker.address}
    try:
        embedder = _worker_embedder(worker, model, model_data, settings)
        counts.where.add(embedder.describe())
        job = resumable(job, index_dir, model.contract.embedding_dim)
        report = _Reporter(worker, settings, job.key)
        for _, shard, error in embed_jobs([job], embedder, settings.tta, settings.batch_size, index_dir,
                                          counts, report.progress, report.cancelled):
            if error is not None:
                result["error"] = error
            else:
                shard.save(shard_path(index_dir, job.key))
    except OSError as exc:
        result["error"] = str(os_error_message(exc, index_dir, f"cannot save embeddings on {worker.address}"))
    except RsirError as exc:
        result["error"] = f"{exc} (on Dask worker {worker.address})"
    return {**result, "indexed": counts.indexed, "skipped": counts.skipped, "non_finite": counts.non_finite,
            "where": sorted(counts.where)}


def _worker_embedder(worker, model: ModelInfo, model_data: bytes, settings: _Settings) -> Embedder:
    """This worker process's session for the model (made once; 'auto' takes CUDA where it works)."""
    threads = _session_threads(worker, settings.host_threads)
    key = (model.sha256, settings.device, threads)
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            local = Path(worker.local_directory) / f"rsir-model-{model.sha256[:16]}.onnx"
            if not local.is_file() or local.stat().st_size != len(model_data):
                partial = local.with_suffix(f".{os.getpid()}.tmp")
                partial.write_bytes(model_data)
                os.replace(partial, local)
            _EMBEDDERS.clear()  # an earlier build's model: one session per process is enough
            _EMBEDDERS[key] = Embedder(dataclasses.replace(model, path=local), settings.device, threads)
        return _EMBEDDERS[key]


def _session_threads(worker, host_threads: dict) -> int:
    """onnxruntime threads for one session: the host's cores shared by all task threads on the host."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    sharing = host_threads.get(worker.ip) or worker.state.nthreads
    return max(1, cores // max(1, sharing))


class _Reporter:
    """A task's progress events and cancel checks, each at most every WORKER_REPORT_S."""

    def __init__(self, worker, settings: _Settings, key: str):
        import distributed

        self.worker, self.topic, self.key = worker, settings.topic, key
        self.event = distributed.Event(settings.cancel)
        self.last_report = self.last_check = 0.0
        self.was_cancelled = False

    def progress(self, percent: float, message: str) -> None:
        now = time.monotonic()
        if now - self.last_report >= WORKER_REPORT_S:
            self.last_report = now
            self.worker.log_event(self.topic, [self.key, float(percent)])

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self.was_cancelled and now - self.last_check >= WORKER_REPORT_S:
            self.last_check = now
            self.was_cancelled = self.event.is_set()
        return self.was_cancelled
