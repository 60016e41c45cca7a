"""rsir pip-installed into a fresh virtualenv, as a user installs it, for tests of the installed commands.

The venv is made like the project's own: the base interpreter of the one running the tests (Debian's
/usr/bin/python3) with `-m venv --system-site-packages`, so it sees QGIS's rasterio. rsir goes in with
`pip install --no-deps --no-build-isolation --no-index` of a copy of this checkout's package sources (a
copy, so the build leaves no build/ folder in the checkout), which needs no network; its dependencies
(onnxruntime, faiss, dask) are the running venv's, put on the new venv's path by a .pth file after the
new venv's own site-packages, so the rsir found there is always the installed one. Commands run with
PYTHONPATH unset and from folders outside the checkout.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "rsir_qgis_plugin", "training", "export")
PIP_INSTALL = ("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
               "--disable-pip-version-check", "--quiet")


def base_python() -> Path:
    """The interpreter the running venv was made from (the test is skipped where there is none)."""
    python = Path(getattr(sys, "_base_executable", "") or sys.executable)
    if not python.is_file():
        pytest.skip(f"no base Python interpreter to make a venv with ({python})")
    return python


def clean_env(**extra: str) -> dict:
    """This environment without anything that would put the checkout or another venv on the path."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    return {**env, **extra}


def run(command: list, cwd: Path, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n"
                             f"{done.stderr}")
    return done


def make_venv(path: Path, with_pip: bool = True) -> Path:
    """A --system-site-packages venv at `path` that also sees the running venv's packages; its bin/."""
    run([base_python(), "-m", "venv", "--system-site-packages", *([] if with_pip else ["--without-pip"]),
         path], cwd=path.parent)
    bin_dir = path / "bin"
    purelib = run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  cwd=path.parent).stdout.strip()
    # Only the running venv's own folders: the system's are on the new venv's path already.
    own = [p for p in site.getsitepackages() if sys.prefix != sys.base_prefix and p.startswith(sys.prefix)
           and Path(p).is_dir()]
    (Path(purelib) / "rsir-test-dependencies.pth").write_text("".join(f"{p}\n" for p in own))
    return bin_dir


def copy_sources(destination: Path) -> Path:
    """The files `pip install` builds rsir from, copied out of the checkout."""
    destination.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def pip_install(bin_dir: Path, source: Path, editable: bool = False) -> None:
    run([bin_dir / "python", *PIP_INSTALL, *(["--editable"] if editable else []), source], cwd=source.parent,
        timeout=300)


def installed_rsir(tmp_path_factory) -> Path:
    """bin/ of a venv with rsir installed (not editable) from a copy of the checkout; made once a session."""
    def install(home: Path, bin_dir: Path) -> None:
        make_venv(home / "venv")
        pip_install(bin_dir, copy_sources(home / "src"))
        shutil.rmtree(home / "src")  # what runs must be the installed copy, nothing else

    return session_venv(tmp_path_factory, "rsir-installed", install)


def plain_python(tmp_path_factory) -> Path:
    """bin/ of a venv that has rsir's dependencies (dask included) but cannot import rsir; made once."""
    def make(home: Path, bin_dir: Path) -> None:
        make_venv(home / "venv", with_pip=False)
        probe = run([bin_dir / "python", "-c", "import rsir_qgis_plugin"], cwd=home, check=False)
        if probe.returncode == 0:
            pytest.skip("rsir is importable from the running venv's site-packages themselves: no venv "
                        "without rsir can be made from them")

    return session_venv(tmp_path_factory, "rsir-absent", make)


def session_venv(tmp_path_factory, name: str, make: Callable[[Path, Path], None]) -> Path:
    """bin/ of the venv `make(home, bin_dir)` builds under the session's temporary folder, once a session.

    A 'ready' mark is written last, so a venv whose making failed half-way is made again, not reused.
    """
    home = tmp_path_factory.getbasetemp() / name
    bin_dir = home / "venv" / "bin"
    if not (home / "ready").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        make(home, bin_dir)
        (home / "ready").touch()
    return bin_dir
