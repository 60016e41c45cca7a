"""Checkpoint files: written atomically, read back with weights_only=True only.

A checkpoint is {"meta", "state_dict" (the RetrievalNet alone, what export loads), "criterion",
"ema", "optimizer", "scheduler", "scaler", "epoch", "best_map"}.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch


def json_safe(obj):
    """A deep copy holding only JSON types, so that meta survives weights_only loading and ONNX metadata."""
    return json.loads(json.dumps(obj))


def architecture_differences(meta: dict, arch: dict) -> dict:
    """{key: (the meta's value, the architecture's value)} for every architecture key where they differ."""
    return {k: (meta.get(k), v) for k, v in json_safe(arch).items() if meta.get(k) != v}


def save_atomic(state: dict, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)
