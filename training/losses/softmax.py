"""Normalised softmax (Zhai & Wu 2018, in paper 001's survey): cross-entropy on cosine similarities
to learnable class prototypes, scaled by a temperature. The plain baseline the papers' losses must beat."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.functional import l2n


def norm_softmax_loss(emb: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """-mean log softmax(cos(f_i, w_c) / T)[y_i]; emb (B, D) L2-normalised, prototypes (C, D)."""
    return F.cross_entropy(emb @ l2n(prototypes).T / temperature, labels)


class NormSoftmax(nn.Module):
    parts = ()

    def __init__(self, dim: int, classes: int, temperature: float = 0.05):
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(classes, dim) / dim ** 0.5)
        self.temperature = temperature

    def forward(self, z: torch.Tensor, labels: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, dict]:
        loss = norm_softmax_loss(l2n(z), self.prototypes, labels, self.temperature)
        return loss, {}
