"""What rsir finds on this machine, as a plain-text report for a bug report (`rsir doctor`, the
plugin's Diagnostics window).

No Qt here: `host_facts()` reads QGIS, Qt and the QGIS profile only where qgis is importable (the GUI
calls it on the UI thread and hands the result to `gather`, which runs in a worker thread). `gather`
imports every package it checks (torch only when installed) and creates real onnxruntime sessions on
the bundled models, on CPU and, where onnxruntime lists CUDA, on CUDA: a few seconds.

Each check is a `Check` record; `render` writes them as text and `problems` names, one line each, what
keeps indexing and search from running (numpy, rasterio, onnxruntime with a loadable bundled model, faiss).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import dependencies
from .core.onnx_header import describe_onnx_header
from .core.runtime import CPU, CUDA

OK, MISSING, FAILED, OPTIONAL = "ok", "missing", "failed", "optional"
PLUGIN_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Check:
    """One fact of the report: `required` ones that are not OK keep rsir from indexing and searching."""

    name: str
    status: str  # OK, MISSING, FAILED or OPTIONAL (not there, and not needed to index and search)
    detail: str  # the version, or what is wrong in the library's own words
    required: bool = False
    fix: str = ""  # what to install or do, for a required check that is not OK


@dataclass(frozen=True)
class HostFacts:
    """The application rsir runs in; empty strings where QGIS is not importable."""

    qgis_version: str = ""
    qt_version: str = ""
    pyqt_version: str = ""
    profile_dir: str = ""  # the QGIS profile folder; empty outside a running QGIS
    settings_file: str = ""  # where QgsSettings keeps rsir's options (section rsir)


@dataclass(frozen=True)
class Package:
    """A Python package the report imports: `install` says what provides it."""

    name: str
    module: str
    install: str
    purpose: str
    required: bool
    extra: tuple[str, ...] = field(default_factory=tuple)  # dotted attributes worth showing after the version


# The engine's packages; optional ones serve the training/export tools and distributed builds only.
PACKAGES: tuple[Package, ...] = (
    Package("numpy", "numpy", "pip install 'numpy<2' (QGIS's own numpy wherever QGIS has one)",
            "arrays everywhere", True),
    Package("rasterio", "rasterio", dependencies.RASTERIO_HELP, "reads the rasters", True),
    Package("onnxruntime", "onnxruntime", "pip install onnxruntime (or onnxruntime-gpu for CUDA)",
            "runs the model", True),
    Package("faiss", "faiss", "pip install faiss-cpu", "the similarity index", True),
    Package("dask", "dask", "pip install dask distributed", "distributed builds (--dask)", False),
    Package("distributed", "distributed", "pip install dask distributed", "distributed builds (--dask)",
            False),
    Package("torch", "torch", "pip install torch", "training and export only", False),
)


def host_facts() -> HostFacts:
    """QGIS's and Qt's versions and the QGIS profile, where qgis is importable (empty otherwise)."""
    try:
        from qgis.core import Qgis, QgsApplication, QgsSettings
        from qgis.PyQt.QtCore import PYQT_VERSION_STR, qVersion
    except Exception:  # noqa: BLE001 - no QGIS, or one whose bindings do not load: the report goes on
        return HostFacts()
    profile = QgsApplication.qgisSettingsDirPath()  # empty unless a QgsApplication is running
    return HostFacts(qgis_version=Qgis.version(), qt_version=qVersion(), pyqt_version=PYQT_VERSION_STR,
                     profile_dir=profile, settings_file=QgsSettings().fileName() if profile else "")


def gather(host: HostFacts | None = None, import_torch: bool = True) -> list[Check]:
    """Every check, in the order of the report. Runs in a worker thread in QGIS (it creates sessions).

    `import_torch` False reports torch's installed version without importing it (inside QGIS, where
    loading its libraries only to report on them costs seconds and memory; nothing in the plugin uses it).
    """
    host = host_facts() if host is None else host
    checks = [_rsir_check(), _python_check(), _qgis_check(host), _qt_check(host), *_gdal_checks()]
    modules: dict[str, object] = {}
    for package in PACKAGES:
        check, module = _package_check(package, import_torch or package.module != "torch")
        checks.append(check)
        if module is not None:
            modules[package.module] = module
    ort = modules.get("onnxruntime")
    checks += _onnxruntime_checks(ort)
    models = _bundled_models()
    model_checks = [_model_check(ort, path) for path in models]
    checks += model_checks
    if not any(c.status == OK for c in model_checks):
        checks.append(_no_model_check(ort, models))
    checks.append(_cuda_check(ort, next((p for p, c in zip(models, model_checks) if c.status == OK), None)))
    checks += _folder_checks(host)
    return checks


def render(checks: list[Check]) -> str:
    """The report: one line per check, `[status] name: detail`, after a heading and a verdict."""
    blocking = problems(checks)
    verdict = ("rsir can index and search here." if not blocking else
               f"rsir cannot index and search here: {len(blocking)} problem(s), marked missing/failed below.")
    width = max(len(c.status) for c in checks) + 2
    lines = [f"rsir diagnostics, {time.strftime('%Y-%m-%d %H:%M:%S %z')}", verdict, ""]
    for check in checks:
        detail = check.detail.replace("\n", "\n" + " " * (width + 1))
        lines.append(f"{'[' + check.status + ']':<{width}} {check.name}: {detail}")
    return "\n".join(lines) + "\n"


def problems(checks: list[Check]) -> list[str]:
    """One line for each required piece that is missing or broken, naming what to install."""
    lines = []
    for check in checks:
        if check.required and check.status != OK:
            detail = (check.detail.splitlines() or [""])[0]
            fix = f"; {check.fix}" if check.fix and check.fix not in detail else ""
            lines.append(f"{check.name} {check.status}: {detail}{fix}")
    return lines


# Checks --------------------------------------------------------------------------------------------

def _rsir_check() -> Check:
    """The plugin's version from its metadata.txt (the plugin zip, a checkout), else the pip package's."""
    version = _distribution_version("rsir")
    for metadata in (PLUGIN_DIR / "metadata.txt", PLUGIN_DIR.parent / "metadata.txt"):
        if metadata.is_file():
            for line in metadata.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("version="):
                    version = line.partition("=")[2].strip()
            break
    return Check("rsir", OK, f"{version} ({PLUGIN_DIR})")


def _python_check() -> Check:
    return Check("Python", OK, f"{platform.python_version()} ({sys.executable}; {platform.platform()})")


def _qgis_check(host: HostFacts) -> Check:
    if host.qgis_version:
        return Check("QGIS", OK, host.qgis_version)
    return Check("QGIS", OPTIONAL, "not importable from this Python (the command line needs no QGIS)")


def _qt_check(host: HostFacts) -> Check:
    if host.qt_version:
        return Check("Qt", OK, f"Qt {host.qt_version}, PyQt {host.pyqt_version or '?'}")
    return Check("Qt", OPTIONAL, "not loaded (QGIS not importable)")


def _gdal_checks() -> list[Check]:
    """GDAL and PROJ as rasterio uses them (osgeo's own bindings where rasterio is missing)."""
    gdal = proj = ""
    try:
        import rasterio

        gdal = rasterio.__gdal_version__
        proj = getattr(rasterio, "__proj_version__", "")
    except Exception:  # noqa: BLE001 - the rasterio check reports why
        pass
    try:
        from osgeo import gdal as osgeo_gdal
        from osgeo import osr

        gdal = gdal or osgeo_gdal.__version__
        proj = proj or ".".join(str(v) for v in (osr.GetPROJVersionMajor(), osr.GetPROJVersionMinor(),
                                                 osr.GetPROJVersionMicro()))
    except Exception:  # noqa: BLE001 - osgeo is optional
        pass
    return [Check("GDAL", OK if gdal else MISSING, gdal or "neither rasterio nor osgeo.gdal imports"),
            Check("PROJ", OK if proj else MISSING, proj or "neither rasterio nor osgeo.osr imports")]


def _package_check(package: Package, load: bool = True) -> tuple[Check, object | None]:
    """Import the package (only when it is installed) and report its version and where it came from."""
    if not dependencies.is_installed(package.module):
        status = MISSING if package.required else OPTIONAL
        detail = f"not installed ({package.purpose}; {package.install})"
        return Check(package.name, status, detail, package.required, package.install), None
    if not load:
        detail = f"{_distribution_version(package.module)} (installed; not imported here, {package.purpose})"
        return Check(package.name, OK, detail, package.required), None
    try:
        module = importlib.import_module(package.module)
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding (numpy ABI, missing DLL)
        text = f"installed but does not import: {type(exc).__name__}: {_first_line(exc)}"
        return Check(package.name, FAILED, text, package.required, package.install), None
    version = getattr(module, "__version__", "") or _distribution_version(package.module)
    where = Path(getattr(module, "__file__", "") or "?").parent
    extra = _PACKAGE_EXTRAS.get(package.module, lambda m: "")(module)
    return Check(package.name, OK, f"{version}{extra} ({where})", package.required), module


def _faiss_extra(faiss) -> str:
    options = getattr(faiss, "get_compile_options", lambda: "")().split()
    return f", {' '.join(o for o in options if o != 'OPTIMIZE')}" if options else ""


def _torch_extra(torch) -> str:
    try:
        cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken CUDA set-up is not a torch failure
        cuda = False
    return f", CUDA {'available' if cuda else 'not available'} to torch"


def _rasterio_extra(rasterio) -> str:
    return f", GDAL {rasterio.__gdal_version__}"


_PACKAGE_EXTRAS = {"faiss": _faiss_extra, "torch": _torch_extra, "rasterio": _rasterio_extra}


def _onnxruntime_checks(ort) -> list[Check]:
    if ort is None:
        return []
    providers = ort.get_available_providers()
    return [Check("onnxruntime providers", OK if CPU in providers else FAILED, ", ".join(providers) or "none",
                  True, "pip install onnxruntime")]


def _bundled_models() -> list[Path]:
    from .core import model

    return sorted(model.MODELS_DIR.glob("*.onnx"), key=lambda p: (p.name != "default.onnx", p.name))


def _model_check(ort, path: Path) -> Check:
    """Opset and IR version from the file, then a real CPU session through rsir's own reader."""
    name = f"model {path.name}"
    try:
        header = describe_onnx_header(path)
    except (OSError, ValueError) as exc:
        header = f"opset unknown (not a whole ONNX file: {exc})"
    if ort is None:
        return Check(name, FAILED, f"{header}; not loaded (onnxruntime is missing)")
    from .core.errors import RsirError
    from .core.model import read_model

    try:
        started = time.perf_counter()
        info = read_model(path)
        took = time.perf_counter() - started
    except RsirError as exc:
        return Check(name, FAILED, f"{header}; does not load: {exc}")
    c = info.contract
    return Check(name, OK, f"{header}; loads with onnxruntime {ort.__version__} on CPU ({took:.1f} s): "
                           f"{c.name}, {c.input_size} px, {c.bands} bands, {c.embedding_dim}-d, "
                           f"{path.stat().st_size / 1e6:.0f} MB")


def _no_model_check(ort, models: list[Path]) -> Check:
    from .core import model

    if ort is None:
        detail = "cannot be loaded without onnxruntime"
        fix = "pip install onnxruntime"
    elif not models:
        detail = f"no .onnx file in {model.MODELS_DIR}"
        fix = "reinstall the plugin (its models folder holds default.onnx)"
    else:
        detail = f"none of {', '.join(p.name for p in models)} loads with onnxruntime {ort.__version__}"
        fix = "install onnxruntime >= 1.15, or reinstall the plugin if the model files are damaged"
    return Check("bundled model", MISSING if not models else FAILED, detail, True, fix)


def _cuda_check(ort, model_path: Path | None) -> Check:
    """A real CUDA session on a bundled model, with onnxruntime's own words when it falls back to CPU."""
    if ort is None:
        return Check("CUDA", OPTIONAL, "not checked (onnxruntime is missing)")
    if CUDA not in ort.get_available_providers():
        return Check("CUDA", OPTIONAL, "not available (onnxruntime has no CUDAExecutionProvider); "
                                       "for an NVIDIA GPU install onnxruntime-gpu instead of onnxruntime")
    if model_path is None:
        return Check("CUDA", FAILED, "CUDAExecutionProvider listed, but no bundled model loads to try it on")
    preload = getattr(ort, "preload_dlls", None)  # CUDA/cuDNN from pip wheels, as core.embedder does
    if preload is not None:
        with contextlib.suppress(Exception):
            preload()
    error, used = "", ""
    with _native_stderr() as logged:
        try:
            options = ort.SessionOptions()
            session = ort.InferenceSession(str(model_path), options, providers=[CUDA, CPU])
            used = session.get_providers()[0]
            if used == CUDA:
                session.run(None, {session.get_inputs()[0].name: _zero_input(session)})
        except Exception as exc:  # noqa: BLE001 - onnxruntime's message is the finding
            error = _first_line(exc)
    said = [line.strip() for line in logged if line.strip()]
    reasons = [line for line in said if "error" in line.lower() or "fail" in line.lower()] or said
    if used == CUDA and not error:
        return Check("CUDA", OK, f"session created and run on CUDA with {model_path.name}")
    because = error or "; ".join(reasons[:3]) or "onnxruntime gave no reason"
    return Check("CUDA", FAILED, f"CUDAExecutionProvider listed, but a session on {model_path.name} "
                                 f"{'failed' if error else 'fell back to CPU'}: {because} (check the CUDA "
                                 "and cuDNN versions this onnxruntime-gpu needs)")


def _zero_input(session):
    import numpy as np

    shape = [d if isinstance(d, int) and d > 0 else 1 for d in session.get_inputs()[0].shape]
    return np.zeros(shape, dtype=np.float32)


def _folder_checks(host: HostFacts) -> list[Check]:
    profile = host.profile_dir
    if profile:
        settings = Check("settings", OK, f"QGIS profile {profile}; rsir's options in {host.settings_file} "
                                         "(section rsir)")
    else:
        profile = str(default_profile_dir())
        settings = Check("settings", OK, f"QGIS not running here; the default QGIS profile is {profile} "
                                         "(rsir's options: its QGIS/QGIS3.ini, section rsir)")
    site = dependencies.private_site(profile)
    if site.is_dir():
        names = sorted({p.name.split("-")[0] for p in site.glob("*.dist-info")})
        where = "on sys.path" if str(site) in sys.path else "not on sys.path in this process"
        detail = f"{site} ({where}; {', '.join(names) or 'no packages'})"
    else:
        detail = f"{site} (not created: the plugin installed nothing there)"
    return [settings, Check("private packages", OK, detail)]


def default_profile_dir() -> Path:
    """The default QGIS 3 profile folder of this platform (where QGIS keeps it when not told otherwise)."""
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "QGIS" / "QGIS3" / "profiles" / "default"


# Helpers ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _native_stderr():
    """What native code (onnxruntime's provider loader) writes to file descriptor 2 meanwhile, as lines.

    onnxruntime reports a CUDA provider that fails to load (a missing cuDNN, say) only through its
    logger on stderr before falling back to CPU. The redirection is process-wide for that moment;
    where file descriptor 2 cannot be duplicated (no console), nothing is collected.
    """
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", errors="replace").splitlines())


def _distribution_version(module: str) -> str:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
