"""In-batch pair losses: contrastive (paper 000 eq. 8) and batch-hard triplet (paper 001, FaceNet form).

Both work on L2-normalised embeddings and on the pairs a class-balanced (P x K) batch provides.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def squared_distances(emb: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) squared Euclidean distances, clamped at 0 against rounding."""
    sq = emb.pow(2).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp(min=0.0)


def contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Eq. 8 over every ordered pair i != j of the batch.

    Positives: 1/2 ||F_i - F_j||^2. Negatives: 1/2 max(0, margin - ||F_i - F_j||)^2, averaged over the
    negatives inside the margin only (in-batch mining: pairs already beyond it carry no gradient and
    would only dilute the mean). The loss is the mean positive term plus the mean active negative term.
    """
    d2 = squared_distances(emb)
    same = labels[:, None] == labels[None, :]
    off_diag = ~torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = 0.5 * d2[same & off_diag]
    # The clamp keeps sqrt differentiable when two embeddings coincide.
    neg = 0.5 * F.relu(margin - d2[~same].clamp(min=1e-12).sqrt()).pow(2)
    neg = neg[neg > 0]
    zero = emb.sum() * 0.0
    return (pos.mean() if pos.numel() else zero) + (neg.mean() if neg.numel() else zero)


def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet: mean over anchors of max(0, max_p d2(a, p) - min_n d2(a, n) + margin).

    Anchors without a positive or a negative in the batch are skipped.
    """
    d2 = squared_distances(emb)
    same = labels[:, None] == labels[None, :]
    off_diag = ~torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos_mask, neg_mask = same & off_diag, ~same
    hardest_pos = d2.masked_fill(~pos_mask, float("-inf")).amax(dim=1)
    hardest_neg = d2.masked_fill(~neg_mask, float("inf")).amin(dim=1)
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    if not valid.any():
        return emb.sum() * 0.0
    return F.relu(hardest_pos[valid] - hardest_neg[valid] + margin).mean()
