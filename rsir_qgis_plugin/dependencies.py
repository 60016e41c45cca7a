"""Which Python packages rsir needs, which are missing, and the pip call that installs them.

Nothing here imports the packages themselves: `find_spec` only looks for them, so checking
costs nothing at QGIS start-up. Installing is `install_packages()`, plain Python with a log callback
and a cancellation check, which `tasks.InstallPackagesTask` runs in a worker thread only when the user
presses the button in the message bar (no Qt here, so the tests can drive it directly).

pip installs into a private folder of the QGIS profile (`--target`), not into QGIS's own
site-packages: that needs no administrator rights on Windows, is not refused by Debian's
PEP 668 "externally managed" guard, and cannot upgrade a package another plugin relies on.
The folder is appended to `sys.path`, so QGIS's own numpy is the one imported. pip is therefore
told that numpy is exactly the version QGIS runs, so the wheels it picks follow QGIS's numpy major
version: numpy 1 where QGIS has it (Debian 12, OSGeo4W builds whose rasterio and osgeo.gdal_array
are compiled against numpy 1), numpy 2 where QGIS ships it (Debian 13, QGIS >= 3.40 installers).
Otherwise it picks wheels for a newer numpy, e.g. faiss-cpu 1.15 needs numpy >= 1.25 and fails to
import beside Debian 12's numpy 1.24, while faiss-cpu 1.8 works with it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Requirement:
    """A package the engine imports; `pip_name` None means pip must not install it."""

    module: str
    pip_name: str | None
    purpose: str


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("onnxruntime", "onnxruntime", "runs the model; onnxruntime-gpu also does"),
    Requirement("faiss", "faiss-cpu", "the similarity index"),
    Requirement("rasterio", None, "reads the rasters"),
)

RASTERIO_HELP = (
    "rasterio must use the same GDAL as QGIS, so rsir does not install it with pip. "
    "Debian/Ubuntu: sudo apt install python3-rasterio; Windows (OSGeo4W installer): add the "
    "python3-rasterio package; conda: conda install rasterio in QGIS's environment."
)


def is_installed(module: str) -> bool:
    """True when `module` can be imported; looks for it without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a half-removed package has a spec that cannot be resolved
        return False


def missing_requirements() -> list[Requirement]:
    return [r for r in REQUIREMENTS if not is_installed(r.module)]


def pip_installable(missing: list[Requirement]) -> list[str]:
    return [r.pip_name for r in missing if r.pip_name]


def describe_missing(missing: list[Requirement]) -> str:
    """One sentence naming each missing package and what it is for."""
    named = ", ".join(f"{r.pip_name or r.module} ({r.purpose})" for r in missing)
    text = f"QGIS's Python lacks packages rsir needs: {named}."
    if any(r.pip_name is None for r in missing):
        text += " " + RASTERIO_HELP
    return text


def private_site(profile_dir: str | Path | None = None) -> Path:
    """The folder pip installs into, per QGIS profile and Python version (wheels are per version)."""
    if profile_dir is None:
        from qgis.core import QgsApplication

        profile_dir = QgsApplication.qgisSettingsDirPath()
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(profile_dir) / "python" / "rsir-packages" / version


def add_private_site(profile_dir: str | Path | None = None) -> Path:
    """Append the private folder to sys.path (at the end: QGIS's own packages keep priority)."""
    site = private_site(profile_dir)
    if str(site) not in sys.path:
        sys.path.append(str(site))
    importlib.invalidate_caches()
    return site


def find_qgis_python(executable: str = sys.executable, exec_prefix: str = sys.exec_prefix,
                     platform: str = sys.platform) -> Path | None:
    """The Python interpreter of this QGIS, which `sys.executable` is not always.

    Inside QGIS on Windows `sys.executable` is qgis-bin.exe and on macOS the QGIS app binary;
    on Linux the embedded interpreter finds "python3" through PATH, which may be another Python
    altogether (seen: a pyenv shim with numpy 2 beside Debian's QGIS). The interpreter that
    belongs to the running prefix comes first: sys.exec_prefix/bin/pythonX.Y, or on Windows
    sys.exec_prefix/python.exe (OSGeo4W: apps/Python3x/python.exe).
    """
    exe = Path(executable)
    prefix = Path(exec_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if platform.startswith("win"):
        candidates = [prefix / "python.exe", exe.parent / "python.exe", exe.parent / "python3.exe"]
    else:
        candidates = [prefix / "bin" / f"python{version}", prefix / "bin" / "python3",
                      exe.parent / "bin" / f"python{version}", exe.parent / "bin" / "python3"]
    if exe.name.lower().startswith("python"):
        candidates.append(exe)  # last: found through PATH, it may not be QGIS's Python
    return next((c for c in candidates if c.is_file()), None)


def interpreter_identity() -> str:
    """What `identity_probe` prints for the running interpreter: version and real exec_prefix."""
    return f"{sys.version_info.major}.{sys.version_info.minor} {os.path.realpath(sys.exec_prefix)}"


IDENTITY_PROBE = "import os, sys; print('%d.%d' % sys.version_info[:2], os.path.realpath(sys.exec_prefix))"


def running_numpy_version() -> str | None:
    """The numpy QGIS's Python imports, read without importing it (None when there is none)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        return numpy.__version__
    try:
        return importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        return None


def numpy_pins(version: str | None) -> list[str]:
    """Exactly QGIS's numpy when known; nothing when QGIS has none (then nothing compiled depends on it)."""
    return [f"numpy=={version}"] if version else []


def pip_command(python: Path, target: Path, packages: list[str], numpy_version: str | None = None) -> list[str]:
    """The pip call that installs `packages` into `target` with numpy held at QGIS's version.

    Wheels only: a source build of faiss or onnxruntime would need a compiler and minutes.
    """
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--only-binary=:all:", "--upgrade", "--target", str(target), *packages, *numpy_pins(numpy_version)]


def import_check_command(python: Path, target: Path, modules: list[str]) -> list[str]:
    """Import the modules the way the plugin will (target appended to sys.path) in a fresh interpreter."""
    code = ("import sys; sys.path.append(sys.argv[1]); import importlib; "
            f"[importlib.import_module(m) for m in {modules!r}]; print('ok')")
    return [str(python), "-c", code, str(target)]


def install_packages(packages: list[str], target: Path, log: Callable[[str], None],
                     is_cancelled: Callable[[], bool] = lambda: False) -> str:
    """pip install `packages` into `target` with QGIS's own Python, then import them in a fresh one.

    Each line pip prints goes to `log`; `is_cancelled()` turning true stops pip and raises Cancelled.
    Returns a summary with the tail of pip's output; raises RsirError saying what went wrong.
    """
    from .core.errors import Cancelled, RsirError

    python = find_qgis_python()
    if python is None:
        raise RsirError(f"cannot find the Python interpreter of this QGIS near {sys.executable}; "
                        f"install {' '.join(packages)} with QGIS's pip yourself")
    check_interpreter(python, packages)
    target.mkdir(parents=True, exist_ok=True)
    command = pip_command(python, target, packages, running_numpy_version())
    log("Running " + " ".join(command))
    output = run_streamed(command, log, is_cancelled)
    if is_cancelled():
        raise Cancelled(f"installing {', '.join(packages)} was cancelled")
    # Installed is not importable: a wheel built for another numpy only fails on import.
    modules = [r.module for r in REQUIREMENTS if r.pip_name in packages]
    check = subprocess.run(import_check_command(python, target, modules), capture_output=True, text=True,
                           timeout=300, **_no_console())
    if check.returncode != 0:
        reason = (check.stderr.strip().splitlines() or ["no output"])[-1]
        raise RsirError(f"pip installed {', '.join(packages)} but they do not import: {reason}")
    return f"installed {', '.join(packages)} into {target}\n{output[-2000:]}"


def check_interpreter(python: Path, packages: list[str]) -> None:
    """Refuse a `python` that is not the one QGIS runs: pip of another Python (another version, or
    another installation) installs wheels for the numpy and ABI of that Python, which this QGIS may not
    be able to import."""
    from .core.errors import RsirError

    probe = subprocess.run([str(python), "-c", IDENTITY_PROBE], capture_output=True, text=True, timeout=120,
                           **_no_console())
    mine = interpreter_identity()
    if probe.returncode != 0 or probe.stdout.strip() != mine:
        found = probe.stdout.strip() or probe.stderr.strip()
        raise RsirError(f"{python} is not the Python QGIS runs ({mine}; it is {found}); "
                        f"install {' '.join(packages)} with QGIS's own pip")


def run_streamed(command: list[str], log: Callable[[str], None], is_cancelled: Callable[[], bool]) -> str:
    """Run `command`, each output line to `log` as it comes (pip takes minutes); stop it on cancel."""
    from .core.errors import RsirError

    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **_no_console()) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            log(line.rstrip())
            if is_cancelled():
                process.terminate()
                break
        code = process.wait()
    if code != 0 and not is_cancelled():
        tail = "\n".join(lines[-15:])
        raise RsirError(f"pip failed (exit {code}); see the rsir log panel. Last lines:\n{tail}")
    return "\n".join(lines)


def _no_console() -> dict:
    """On Windows a console window would flash up for every subprocess without this flag."""
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {}
