"""Training checkpoints as export reads them: training/checkpoint.py owns the format and reads the file;
this module only turns its errors (and a missing training package) into ModelError lines for a user."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from torch import nn

from rsir_qgis_plugin.core.errors import ModelError


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    meta: dict
    state_dict: dict


def _training(module: str, path: Path, what: str) -> ModuleType:
    """A training module, or a ModelError saying how to make it importable."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name not in ("training", module, None):
            raise  # a dependency of training itself is missing: its own message says which
        raise ModelError(f"{path}: {what} needs {module}, which is not importable here ({exc}); run from the "
                         "repository root with the training package present") from exc


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint with weights_only=True: a checkpoint from elsewhere cannot run code on load."""
    path = Path(path)
    checkpoint = _training("training.checkpoint", path, "reading a checkpoint")
    try:
        data = checkpoint.read(path)
    except checkpoint.CheckpointError as exc:
        raise ModelError(str(exc)) from exc
    return Checkpoint(path=path, meta=data["meta"], state_dict=data["state_dict"])


def build_net(checkpoint: Checkpoint) -> nn.Module:
    """The checkpoint's network, rebuilt by training.models.build_from_meta, weights loaded strictly, eval mode."""
    models = _training("training.models", checkpoint.path, "rebuilding the network")
    net = models.build_from_meta(checkpoint.meta)
    try:
        net.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{checkpoint.path}: weights do not fit the network its meta describes ({exc})") from exc
    return net.eval()
