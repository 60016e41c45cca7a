"""onnxruntime for rsir: importing it (a missing package is one line, not a traceback), the execution
providers rsir runs on, and the session options every rsir session uses.

onnxruntime is imported only by import_onnxruntime(), so importing this module costs nothing.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from .errors import MissingDependencyError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
USABLE_PROVIDERS = (CUDA, CPU)  # what rsir can run on; onnxruntime also lists e.g. Azure, which cannot embed
# onnxruntime logs a failing run itself (a coloured "[E:onnxruntime:...]" line on stderr) before raising;
# rsir reports every failure in its own line, so only fatal messages are left to onnxruntime's log.
ORT_LOG_FATAL = 4


def import_onnxruntime():
    """The onnxruntime module; MissingDependencyError with the pip command when it cannot be imported."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(["onnxruntime"], f"import failed: {exc}; pip install onnxruntime "
                                                      "(or onnxruntime-gpu)") from exc
    # Wheels of onnxruntime-gpu find CUDA/cuDNN installed from pip only after this call.
    if hasattr(onnxruntime, "preload_dlls"):
        with contextlib.suppress(Exception):  # best effort: the session reports the real failure
            onnxruntime.preload_dlls()
    return onnxruntime


@dataclass(frozen=True)
class DeviceReport:
    """What inference devices this machine offers, for a user to see before choosing."""

    providers: tuple[str, ...]
    cuda_listed: bool
    onnxruntime_version: str

    def describe(self) -> str:
        cuda = "CUDA available" if self.cuda_listed else "no CUDA (onnxruntime CPU build or no GPU)"
        return f"onnxruntime {self.onnxruntime_version}: {cuda}; providers {', '.join(self.providers)}"


def usable_providers(ort) -> tuple[str, ...]:
    """The providers onnxruntime lists that rsir can use (CUDA, CPU), in onnxruntime's order."""
    return tuple(p for p in ort.get_available_providers() if p in USABLE_PROVIDERS)


def available_devices() -> DeviceReport:
    """The execution providers rsir can use on this machine (CUDA, CPU), in onnxruntime's order."""
    ort = import_onnxruntime()
    providers = usable_providers(ort)
    return DeviceReport(providers=providers, cuda_listed=CUDA in providers,
                        onnxruntime_version=ort.__version__)


def apply_thread_budget(options) -> None:
    """Session options for sharing the CPU: onnxruntime's intra-op threads (one per physical core by
    default) sleep instead of spinning when they wait for work.

    Spinning threads keep their cores busy between parallel sections and between runs, where the
    tile reader (core.pipeline), QGIS and other processes need them: on 2 shared cores, not spinning
    ran the bundled model 15-19 % faster at 20 % less CPU time per image (benchmarks/index_throughput.py).
    """
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")


def quiet_session_options(ort):
    """Session options whose failures reach the user only through rsir's own message."""
    options = ort.SessionOptions()
    options.log_severity_level = ORT_LOG_FATAL
    return options


def inference_session_options(ort, threads: int | None = None):
    """The options of a session that embeds tiles: quiet, every graph optimisation, `threads` intra-op
    threads (None: onnxruntime's default) that sleep rather than spin (apply_thread_budget)."""
    options = quiet_session_options(ort)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    apply_thread_budget(options)
    return options
