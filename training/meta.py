"""A checkpoint's meta: everything to rebuild the network and fill the ONNX contract, plus the model card
(data, split, loss, metrics, device, time, git revision, full configuration, what a fine-tune started from).
"""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from . import checkpoint
from .config import FitConfig
from .data.chips import chips_source
from .data.split import Split
from .runtime import Runtime

# Settings a criterion may read (LossContext.settings); the card records them with the loss's name.
LOSS_SETTINGS = ("sigma", "ri_lambda", "contrastive_margin", "triplet_margin", "softmax_temperature")


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def init_lineage(init_meta: dict) -> dict:
    """What a fine-tuned model started from, for its card: the starting model's name, origin and training."""
    training = init_meta.get("training", {})
    return {"name": init_meta.get("name"), "from_onnx": init_meta.get("from_onnx"),
            "loss": training.get("loss", {}).get("name"), "epochs": training.get("epochs"),
            "metrics": training.get("metrics"), "init": training.get("init")}


def make_meta(cfg: FitConfig, arch: dict, mean, std, split: Split, rt: Runtime, metrics: dict,
              epochs_done: int, seconds: float, init_meta: dict | None = None) -> dict:
    """Everything to rebuild the network and fill the ONNX contract, plus the model card."""
    loss = {"name": cfg.loss, **{k: getattr(cfg, k) for k in LOSS_SETTINGS}}
    if cfg.loss.startswith("snca") or cfg.loss == "ri_snca":
        loss.update(bank_update=cfg.bank_update, bank_momentum=cfg.bank_momentum,
                    bank_milestones=cfg.bank_milestones, bank_init=cfg.bank_init)
    return checkpoint.json_safe({
        "format_version": 1, "name": cfg.run_name, **arch, "mean": mean, "std": std,
        "band_indices": cfg.bands, "backbone_weights": cfg.weights,
        "training": {
            "data": {"root": Path(cfg.data).name, "band_indices": cfg.bands, **split.describe(),
                     **(chips_source(cfg.data) or {})},
            "split": {"seed": split.seed, "test_fraction": split.test_fraction, "file": "split.json"},
            "loss": loss, "epochs": epochs_done, "metrics": metrics,
            "device": rt.describe(), "train_seconds": round(seconds, 1), "git": git_revision(),
            "config": dataclasses.asdict(cfg),
            **({"init": init_lineage(init_meta)} if init_meta else {}),
        },
        **({"tile_size": cfg.tile_size} if cfg.tile_size else {}),  # the contract's footprint (export)
        # Folded statistics stay folded while --freeze-bn keeps them: a further fine-tune needs it too.
        **({"batchnorm_folded": True} if init_meta and init_meta.get("batchnorm_folded") else {}),
    })
