"""Shared pieces of the reliability suite: real indexes on real files, the real CLI in a child process."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.params import BuildParams, TilingParams

ROOT = Path(__file__).resolve().parents[2]
TILING = TilingParams(tile_px=96, stride_px=96)  # 16 tiles per 384 px crop
NOBODY = 65534


def params(index_dir, rasters, model, **changes) -> BuildParams:
    changes.setdefault("tiling", TILING)
    return BuildParams(index_dir=index_dir, rasters=tuple(rasters), model_path=model, batch_size=16, **changes)


def snapshot(index_dir: Path) -> dict[str, str]:
    """Every file of the index (manifest, generations, shards) and a hash of its bytes."""
    return {str(p.relative_to(index_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(index_dir).rglob("*")) if p.is_file() and p.name != ".lock"}


def run_cli(*args, env: dict | None = None, user: int | None = None, limits=None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line in a child process (optionally as an unprivileged user, or under rlimits)."""
    def before_exec():
        if limits:
            import resource
            import signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            for which, value in limits:
                resource.setrlimit(which, (value, value))
        if user is not None:
            os.setgid(user)
            os.setuid(user)

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    if user is not None:  # a real user has a home of their own (onnxruntime writes a file there)
        full_env["HOME"] = tempfile.mkdtemp(prefix="rsir-home-")
        os.chown(full_env["HOME"], user, user)
    return subprocess.run([sys.executable, "-m", "rsir_qgis_plugin", *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=before_exec if (limits or user is not None) else None)


def one_line_error(done: subprocess.CompletedProcess, *expected: str) -> str:
    """The run failed with exactly one line on stderr, no traceback, holding each expected text."""
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def two_rasters(tmp_path, town_crop) -> list[Path]:
    second = Path(shutil.copy(town_crop, tmp_path / "second.tif"))
    return [town_crop, second]


@pytest.fixture
def built(tmp_path, tiny_model, two_rasters) -> Path:
    """An index of two real rasters (32 tiles)."""
    index = tmp_path / "idx"
    summary = build_index(params(index, two_rasters, tiny_model))
    assert summary.tiles_total == 32 and not summary.failed
    return index


@pytest.fixture
def shared_folder():
    """A folder an unprivileged user can enter (pytest's own tmp folders are private to root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child process as another user")
    folder = Path(tempfile.mkdtemp(prefix="rsir-reliability-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
