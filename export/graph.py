"""The module that is traced to ONNX: float32 in, the embedding net, float32 out."""
from __future__ import annotations

import copy

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


def half_precision(net: nn.Module, example: torch.Tensor) -> nn.Module:
    """A half-precision copy of `net`, except modules that are fed float32 on purpose.

    Code written for mixed precision (e.g. attention that runs its softmax in float32 under autocast)
    casts to float32 itself; a blanket .half() would leave such modules with half weights and float32
    inputs. One forward pass on `example` finds them and puts their own weights back to float32.
    """
    half = copy.deepcopy(net).half().eval()

    def keep_float32(module: nn.Module, args: tuple) -> None:
        if any(isinstance(a, torch.Tensor) and a.dtype == torch.float32 for a in args):
            for param in module.parameters(recurse=False):
                param.data = param.data.float()
            for name, buffer in module.named_buffers(recurse=False):
                if buffer.is_floating_point():
                    setattr(module, name, buffer.float())

    handles = [module.register_forward_pre_hook(keep_float32) for module in half.modules()]
    try:
        with torch.no_grad():
            half(example.half())
    finally:
        for handle in handles:
            handle.remove()
    return half
