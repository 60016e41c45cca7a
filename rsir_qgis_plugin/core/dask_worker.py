"""The task a Dask worker runs for a build (core/distributed.py submits it): embed one block of a raster's
windows (a whole raster when it has one block, core/blocks.py), save its shard.

Workers write each finished shard (and the checkpoints inside a large raster) straight into the
index folder, which the client and every worker must see at the same path; the task returns only its
counts. Each worker process keeps one onnxruntime session per model, made from the model's files sent
by the client and written into the worker's local directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .embedder import Embedder
from .errors import RsirError
from .jobs import Job, JobCounts, embed_jobs, resumable
from .memory import batch_size_within_memory
from .model import ModelInfo
from .store import shard_path
from .store.files import os_error_message

WORKER_REPORT_S = 0.5  # how often a task reports progress and looks for a cancel
SCHEDULER_CALL_TIMEOUT_S = 5  # a cancel check the scheduler does not answer within this is taken as "go on"


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What a task needs besides its job and the model (small, sent with every task)."""

    device: str
    tta: bool
    batch_size: int
    host_threads: dict  # host -> task threads of all its workers, to share the host's cores
    topic: str  # progress events go to this topic
    cancel: str  # name of the distributed.Event the client sets when it cancels


_EMBEDDERS: dict[tuple, Embedder] = {}  # one session per model version, device and thread count
_EMBEDDERS_LOCK = threading.Lock()


def embed_on_worker(job: Job, model: ModelInfo, model_files: dict[str, bytes], settings: WorkerSettings,
                     index_dir: str) -> dict:
    """Embed one block of a raster on this worker, from its checkpoint if an earlier attempt left one (a
    worker lost mid-block), and save its shard on the shared path; return the counts."""
    import distributed

    worker = distributed.get_worker()
    index_dir = Path(index_dir)
    counts = JobCounts()
    result = {"error": None, "worker": worker.address}
    with _gdal_failures_kept() as gdal_failures:
        try:
            embedder = _worker_embedder(worker, model, model_files, settings)
            counts.where.add(embedder.describe())
            job = resumable(job, index_dir, model.contract.embedding_dim)
            report = _Reporter(worker, settings, job.key)
            # This worker's memory, not the client's, bounds the batch.
            contract = model.contract
            batch_size, _ = batch_size_within_memory(contract.bands, contract.input_size, settings.batch_size)
            for _, shard, error in embed_jobs([job], embedder, settings.tta, batch_size, index_dir,
                                              counts, report.progress, report.cancelled):
                if error is not None:
                    result["error"] = _with_gdal_reason(error, gdal_failures)
                else:
                    shard.save(shard_path(index_dir, job.key))
        except OSError as exc:
            result["error"] = str(os_error_message(exc, index_dir, f"cannot save embeddings on {worker.address}"))
        except RsirError as exc:
            result["error"] = f"{_with_gdal_reason(str(exc), gdal_failures)} (on Dask worker {worker.address})"
    return {**result, "indexed": counts.indexed, "skipped": counts.skipped, "non_finite": counts.non_finite,
            "where": sorted(counts.where)}


_GDAL_LOCK = threading.Lock()
_GDAL_USERS: list[list[str]] = []  # the failure lists of the tasks running in this process


@contextlib.contextmanager
def _gdal_failures_kept() -> Iterator[list[str]]:
    """GDAL's error messages kept while a task runs, not printed: a worker's "ERROR 1: ..." lines would
    reach the user's terminal (a local cluster's workers share it) besides the raster's own failure
    line, which a local build prints alone (cli_errors.gdal_messages). The handler is process-wide, as the
    tiles are read in a thread of their own; tasks running side by side share it.
    """
    try:
        from osgeo import gdal
    except ImportError:  # rasterio without GDAL's own Python bindings: GDAL keeps its default handler
        gdal = None
    failures: list[str] = []
    with _GDAL_LOCK:
        if gdal is not None and not _GDAL_USERS:
            gdal.SetErrorHandler(_keep_gdal_failure)
        _GDAL_USERS.append(failures)
    try:
        yield failures
    finally:
        with _GDAL_LOCK:
            _GDAL_USERS.remove(failures)
            if gdal is not None and not _GDAL_USERS:
                gdal.SetErrorHandler("CPLDefaultErrorHandler")


def _keep_gdal_failure(err_class: int, err_no: int, message: str) -> None:
    if err_class >= 3:  # CE_Failure, CE_Fatal; warnings are dropped, as a local build drops them
        for failures in list(_GDAL_USERS):
            failures.append(str(message).strip())


def _with_gdal_reason(error: str, failures: list[str]) -> str:
    """The raster's failure line, with GDAL's last failure where the line holds none of GDAL's words."""
    reasons = [text.splitlines()[0].strip() for text in failures if text.strip()]
    if not reasons or any(_letters(reason) in _letters(error) for reason in reasons):
        return error
    return f"{error} (GDAL: {reasons[-1][:300]})"


def _letters(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _worker_embedder(worker, model: ModelInfo, model_files: dict[str, bytes],
                     settings: WorkerSettings) -> Embedder:
    """This worker process's session for the model (made once; 'auto' takes CUDA where it works)."""
    threads = _session_threads(worker, settings.host_threads)
    key = (model.sha256, settings.device, threads)
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            # The model's files keep their names in a folder of their own: external data is found
            # beside the model by the name the model gives.
            folder = Path(worker.local_directory) / f"rsir-model-{model.sha256[:16]}"
            for name, data in model_files.items():
                local = folder / name
                if not local.is_file() or local.stat().st_size != len(data):
                    local.parent.mkdir(parents=True, exist_ok=True)
                    partial = local.with_name(f"{local.name}.{os.getpid()}.tmp")
                    partial.write_bytes(data)
                    os.replace(partial, local)
            _EMBEDDERS.clear()  # an earlier build's model: one session per process is enough
            local_model = folder / Path(model.path).name
            _EMBEDDERS[key] = Embedder(dataclasses.replace(model, path=local_model), settings.device, threads)
        return _EMBEDDERS[key]


def _session_threads(worker, host_threads: dict) -> int:
    """onnxruntime threads for one session: the host's cores shared by all task threads on the host."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    sharing = host_threads.get(worker.ip) or worker.state.nthreads
    return max(1, cores // max(1, sharing))


class _Reporter:
    """A task's progress events and cancel checks, each at most every WORKER_REPORT_S."""

    def __init__(self, worker, settings: WorkerSettings, key: str):
        self.worker, self.topic, self.key = worker, settings.topic, key
        self.cancel = settings.cancel
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
            self.was_cancelled = self._event_is_set()
        return self.was_cancelled

    def _event_is_set(self) -> bool:
        """The client's cancel Event, asked of the scheduler over the worker's own link.

        distributed.Event would open a Client in the worker process, which, closed at the process's
        exit after its event loop (a cancelled or interrupted build), prints "IOLoop is closed"
        tracebacks on the user's terminal.
        """
        from distributed.utils import sync

        try:
            return bool(sync(self.worker.loop, self.worker.scheduler.event_is_set, name=self.cancel,
                             callback_timeout=SCHEDULER_CALL_TIMEOUT_S))
        except (OSError, TimeoutError):  # the scheduler is gone: this task's outcome no longer matters
            return False
