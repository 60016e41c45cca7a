"""Losses by name. Every criterion is an nn.Module called as criterion(z, labels, slots) -> (loss, parts),
where z is the raw (unnormalised) embedding, labels the classes and slots the samples' memory-bank
slots; `parts` names the loss terms reported beside the total. Criteria with a memory bank expose it
as `criterion.bank` for the training loop to update after each optimiser step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..models.functional import l2n
from .pairs import contrastive_loss, triplet_loss
from .snca import BankNCA, MemoryBank, snca_loss
from .softmax import NormSoftmax, norm_softmax_loss


class PairLoss(nn.Module):
    """A parameter-free in-batch loss (contrastive, triplet) behind the common criterion interface."""

    parts = ()

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor], margin: float):
        super().__init__()
        self.fn, self.margin = fn, margin

    def forward(self, z: torch.Tensor, labels: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.fn(l2n(z), labels, self.margin), {}


@dataclass(frozen=True)
class LossContext:
    """What a criterion may need from the run: training labels, sizes and the loss settings."""

    labels: torch.Tensor      # (N,) class of each training image
    classes: int
    dim: int                  # embedding dimension
    settings: dict            # loss-related configuration fields (margins, sigma, lambda, ...)
    generator: torch.Generator


@dataclass(frozen=True)
class LossSpec:
    build: Callable[[LossContext], nn.Module]
    sampler: str            # "random" or "pk" (class-balanced batches, needed for in-batch pairs)
    rotations: int = 1      # bank slots per image (8 for rotation-invariant SNCA)


def _bank(ctx: LossContext, rotations: int = 1, lam: float = 0.0, ce: bool = False) -> BankNCA:
    s = ctx.settings
    return BankNCA(ctx.labels, ctx.dim, s["sigma"], rotations, lam, ctx.classes if ce else 0, ctx.generator)


LOSSES: dict[str, LossSpec] = {
    "contrastive": LossSpec(lambda c: PairLoss(contrastive_loss, c.settings["contrastive_margin"]), "pk"),
    "triplet": LossSpec(lambda c: PairLoss(triplet_loss, c.settings["triplet_margin"]), "pk"),
    "norm_softmax": LossSpec(lambda c: NormSoftmax(c.dim, c.classes, c.settings["softmax_temperature"]),
                             "random"),
    "snca": LossSpec(lambda c: _bank(c), "random"),
    "snca_ce": LossSpec(lambda c: _bank(c, ce=True), "random"),
    "ri_snca": LossSpec(lambda c: _bank(c, 8, c.settings["ri_lambda"]), "random", rotations=8),
}


def loss_spec(name: str) -> LossSpec:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss '{name}'; choose one of {sorted(LOSSES)}") from None


__all__ = ["LOSSES", "LossContext", "LossSpec", "loss_spec", "BankNCA", "MemoryBank", "NormSoftmax",
           "PairLoss", "contrastive_loss", "triplet_loss", "snca_loss", "norm_softmax_loss"]
