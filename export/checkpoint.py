"""Training checkpoints: {"meta": {...}, "state_dict": {...}} files, loaded without unpickling code."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rsir_qgis_plugin.core.errors import ModelError


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    meta: dict
    state_dict: dict


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint with weights_only=True: a checkpoint from elsewhere cannot run code on load."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and its own errors for unreadable files
        raise ModelError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict) or not isinstance(
            data.get("state_dict"), dict):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ModelError(f"{path}: a checkpoint must be a dict with 'meta' and 'state_dict' dicts, found {keys}")
    return Checkpoint(path=path, meta=data["meta"], state_dict=data["state_dict"])


def build_net(checkpoint: Checkpoint) -> nn.Module:
    """The checkpoint's network, rebuilt by training.models.build_from_meta, weights loaded strictly, eval mode."""
    try:
        from training.models import build_from_meta
    except ImportError as exc:
        if exc.name not in ("training", "training.models", None):
            raise  # a dependency of training itself is missing: its own message says which
        raise ModelError(f"{checkpoint.path}: rebuilding the network needs training.models.build_from_meta, "
                         f"which is not importable here ({exc}); run from the repository root with the "
                         "training package present") from exc
    net = build_from_meta(checkpoint.meta)
    try:
        net.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{checkpoint.path}: weights do not fit the network its meta describes ({exc})") from exc
    return net.eval()
