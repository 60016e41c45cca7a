"""The module that is traced to ONNX: float32 in, the embedding net, float32 out."""
from __future__ import annotations

import torch
from torch import nn


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of (N, D) to unit length; exports as ReduceL2, Clip, Div (F.normalize adds Shape/Expand)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)


class EmbeddingGraph(nn.Module):
    """Wraps a net (N, bands, S, S) -> (N, D) for export.

    With `fp16` the net runs in half precision between two casts, so the engine still feeds and reads
    float32. The L2 normalisation runs after the cast back, in float32: idempotent when the net already
    normalises, and it keeps the output unit-norm to float32 precision even for an fp16 graph.
    """

    def __init__(self, net: nn.Module, normalize: bool, fp16: bool = False):
        super().__init__()
        self.net = net
        self.normalize = normalize
        self.fp16 = fp16

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.half() if self.fp16 else image
        out = self.net(x).float()
        return l2_normalize(out) if self.normalize else out
