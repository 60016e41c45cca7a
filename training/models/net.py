"""The retrieval network: backbone -> attention head -> pooling -> optional projection -> L2 norm.

Everything needed to rebuild it lives in the checkpoint's `meta` dict (see `architecture_meta`), so
export and evaluation call `build_from_meta(meta)` and never guess.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import checkpoint
from .attention import HEADS
from .backbones import backbone_spec, build_backbone
from .functional import l2n
from .pooling import POOLINGS


class RetrievalNet(nn.Module):
    """(N, bands, S, S) normalised float32 -> (N, D) embeddings, L2-normalised unless asked otherwise."""

    def __init__(self, backbone: nn.Module, head: nn.Module, pool: nn.Module, proj: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pool = pool
        self.proj = proj

    def forward(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        # normalize=False gives the raw projection output that SNCA-CE's classifier reads (as in Kang's code).
        z = self.proj(self.pool(self.head(self.backbone(x))))
        return l2n(z) if normalize else z


def architecture_meta(backbone: str, head: str, pooling: str, embedding_dim: int, input_size: int,
                      bands: int, head_options: dict | None = None, gem_p: float = 3.0) -> dict:
    """The architecture part of a checkpoint's meta; embedding_dim 0 means no projection."""
    channels = backbone_spec(backbone).channels
    return {
        "backbone": backbone, "head": head, "head_options": dict(head_options or {}),
        "pooling": pooling, "gem_p": float(gem_p),
        "feature_dim": channels, "projection": embedding_dim > 0,
        "embedding_dim": int(embedding_dim) if embedding_dim > 0 else channels,
        "input_size": int(input_size), "bands": int(bands), "normalized": True,
    }


def build_net(arch: dict, weights: str = "none") -> RetrievalNet:
    """A RetrievalNet from an architecture dict (`architecture_meta` or a full meta)."""
    if arch["head"] not in HEADS:
        raise ValueError(f"unknown head '{arch['head']}'; choose one of {sorted(HEADS)}")
    if arch["pooling"] not in POOLINGS:
        raise ValueError(f"unknown pooling '{arch['pooling']}'; choose one of {sorted(POOLINGS)}")
    spec = backbone_spec(arch["backbone"])
    size = arch["input_size"]
    side = -(-size // spec.stride)  # every backbone here rounds up at each stride-2 step
    backbone = build_backbone(arch["backbone"], weights, size, arch["bands"])
    head = HEADS[arch["head"]](spec.channels, (side, side), arch.get("head_options", {}))
    pool = POOLINGS[arch["pooling"]](arch.get("gem_p", 3.0))
    proj = nn.Linear(spec.channels, arch["embedding_dim"]) if arch["projection"] else nn.Identity()
    return RetrievalNet(backbone, head, pool, proj)


def build_from_meta(meta: dict) -> RetrievalNet:
    """The untrained network a checkpoint's meta describes; load its state_dict to get the model."""
    return build_net(meta, weights="none")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[RetrievalNet, dict]:
    """(network in eval mode with the checkpoint's weights, meta), read with weights_only=True."""
    ckpt = checkpoint.read(path, map_location)
    net = build_from_meta(ckpt["meta"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), ckpt["meta"]
