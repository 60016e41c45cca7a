"""Checkpoint files: the format's one home. Written atomically, read back with weights_only=True only.

A checkpoint is {"meta", "state_dict" (the RetrievalNet alone, what export loads), "criterion",
"ema", "optimizer", "scheduler", "scaler", "epoch", "best_map"}; `read` checks the two that every
reader needs (fit's resume and --init, training.models.load_checkpoint, export), `load` reads any torch
file (backbone weights too) under the same weights_only rule.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and the problem."""


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


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """A torch file read with weights_only=True: a checkpoint from elsewhere cannot run code on load."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def read(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint, checked to be a dict with 'meta' and 'state_dict' dicts; else CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = load(path, map_location)
    except Exception as exc:  # torch raises pickle, zip and its own errors for unreadable files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict) or not isinstance(
            data.get("state_dict"), dict):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: a checkpoint must be a dict with 'meta' and 'state_dict' dicts, "
                              f"found {keys}")
    return data
