"""Fixtures for the training tests: the 40 real AID scenes in tests/data/scenes and a small CPU budget."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCENES = REPO / "tests" / "data" / "scenes"
# One thread per process: the machines these run on are small and shared, and oversubscribed
# OpenMP threads spin instead of working.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

# A configuration small enough for a CPU test: 32 training images, one batch per epoch.
TINY = ["--data", str(SCENES), "--backbone", "resnet18", "--weights", "none", "--input-size", "32",
        "--batch-size", "32", "--workers", "0", "--eval-batch-size", "64"]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def scenes() -> Path:
    return SCENES


def run_module(module: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository root, as a user would run it."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{module} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real `python -m training.fit` run: dual attention + GeM + SNCA, one batch, one epoch."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_module("training.fit", *TINY, "--head", "dual_attention", "--loss", "snca", "--epochs", "1",
               "--out", str(out))
    return out
