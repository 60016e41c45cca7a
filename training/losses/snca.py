"""Scalable neighbourhood component analysis over a memory bank (paper 001; Wu et al. ECCV 2018;
Kang et al. TGRS 2020 and 2021).

For an embedding f_i and a bank of L2-normalised features of every training image (or, for the
rotation-invariant loss, of every rotated copy),
    p_ij = exp(s_ij / sigma) / sum_{k != i} exp(s_ik / sigma),    s = cosine similarity,
    L    = -mean_i log sum_{j in Omega_i} p_ij.
The bank is a registered buffer (it follows the module's device) and is written only by the explicit
`no_grad` update methods, which the training loop calls after the optimiser step: never inside
backward, which would break with AMP, gradient accumulation and DDP.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.functional import l2n


def snca_loss(emb: torch.Tensor, bank: torch.Tensor, slots: torch.Tensor, positive: torch.Tensor,
              sigma: float) -> torch.Tensor:
    """-mean_i log sum_{j in Omega_i} p_ij, with each sample's own bank slot excluded (p_ii = 0).

    emb: (B, D) L2-normalised; bank: (M, D); slots: (B,) own slot of each sample;
    positive: (B, M) bool, Omega_i. Samples with no positive left are skipped.
    """
    logits = emb @ bank.T / sigma                                       # (B, M)
    own = F.one_hot(slots, bank.shape[0]).bool()                        # (B, M)
    logits = logits.masked_fill(own, float("-inf"))
    pos = positive & ~own
    log_num = logits.masked_fill(~pos, float("-inf")).logsumexp(dim=1)  # log sum_{j in Omega_i} exp
    log_den = logits.logsumexp(dim=1)                                   # log sum_{k != i} exp
    valid = pos.any(dim=1)
    if not valid.any():
        return emb.sum() * 0.0
    return -(log_num - log_den)[valid].mean()


class MemoryBank(nn.Module):
    """(M, D) unit vectors, one per training image (or rotated copy), in a buffer."""

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("vectors", l2n(torch.randn(size, dim, generator=generator)))

    @torch.no_grad()
    def momentum_update(self, slots: torch.Tensor, feats: torch.Tensor, momentum: float) -> None:
        """v <- normalise(momentum * v + (1 - momentum) * f) for the given slots (SNCA's update)."""
        mixed = momentum * self.vectors[slots] + (1.0 - momentum) * feats.to(self.vectors)
        self.vectors.index_copy_(0, slots, l2n(mixed))

    @torch.no_grad()
    def replace(self, slots: torch.Tensor, feats: torch.Tensor) -> None:
        """v <- normalise(f): the MoCo-style variant, where f comes from an EMA encoder."""
        self.vectors.index_copy_(0, slots, l2n(feats.to(self.vectors)))


class BankNCA(nn.Module):
    """SNCA, SNCA + CE and rotation-invariant SNCA as one criterion over a memory bank.

    labels: (N,) class of every training image. With `rotations` R > 1 each image has R bank slots,
    slot = image * R + r for its copy rotated by r * 360/R degrees, and the loss gains the rotation
    term -lam * mean log sum_{j in R_i} p_ij whose positives are the image's other rotated copies
    (Kang et al. 2021: R = 8, lam = 0.1). With `classes` > 0 a linear classifier on the raw
    (unnormalised) embedding adds cross-entropy (SNCA-CE: L = L_CE + L_SNCA).
    """

    def __init__(self, labels: torch.Tensor, dim: int, sigma: float = 0.05, rotations: int = 1,
                 lam: float = 0.0, classes: int = 0, generator: torch.Generator | None = None):
        super().__init__()
        self.sigma, self.rotations, self.lam = sigma, rotations, lam
        self.register_buffer("slot_labels", labels.long().repeat_interleave(rotations))
        self.register_buffer("slot_images", torch.arange(len(labels)).repeat_interleave(rotations))
        self.bank = MemoryBank(len(labels) * rotations, dim, generator)
        self.classifier = nn.Linear(dim, classes) if classes > 0 else None
        self.parts = ("snca",) + (("rotation",) if rotations > 1 and lam > 0 else ()) + (("ce",) if classes > 0 else ())

    def forward(self, z: torch.Tensor, labels: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, dict]:
        emb = l2n(z)
        bank = self.bank.vectors
        same_class = self.slot_labels[None, :] == labels[:, None]
        loss = class_term = snca_loss(emb, bank, slots, same_class, self.sigma)
        parts = {"snca": class_term.detach()}
        if self.rotations > 1 and self.lam > 0:
            same_image = self.slot_images[None, :] == self.slot_images[slots][:, None]
            rot_term = snca_loss(emb, bank, slots, same_image, self.sigma)
            loss = loss + self.lam * rot_term
            parts["rotation"] = rot_term.detach()
        if self.classifier is not None:
            ce = F.cross_entropy(self.classifier(z), labels)
            loss = loss + ce
            parts["ce"] = ce.detach()
        return loss, parts
