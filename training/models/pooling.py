"""Global pooling by name (paper 000 eq. 1-3): a table of modules that map (N, C, H, W) to (N, C)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .functional import gem, mac, spoc


class GeM(nn.Module):
    """Generalised mean pooling with a learnable exponent p (eq. 3); p=1 is SPoC, p->inf is MAC."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"


class _Fixed(nn.Module):
    """A parameter-free pooling function as a module."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


POOLINGS: dict[str, Callable[[float], nn.Module]] = {
    "avg": lambda p: _Fixed(spoc),
    "max": lambda p: _Fixed(mac),
    "gem": lambda p: GeM(p),
}
