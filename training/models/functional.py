"""Pure tensor functions behind the modules: normalisation, pooling (paper 000 eq. 1-3) and the
two attention maps of the dual attention head (paper 000 eq. 4-7)."""
from __future__ import annotations

import torch


def l2n(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalise the rows of (N, D); a zero row stays zero."""
    return x / x.norm(p=2, dim=1, keepdim=True).clamp(min=eps)


def spoc(x: torch.Tensor) -> torch.Tensor:
    """Average pooling, eq. 1: (N, C, H, W) -> (N, C)."""
    return x.mean(dim=(-2, -1))


def mac(x: torch.Tensor) -> torch.Tensor:
    """Max pooling, eq. 2: (N, C, H, W) -> (N, C)."""
    return x.amax(dim=(-2, -1))


def gem(x: torch.Tensor, p: torch.Tensor | float, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean pooling, eq. 3: (mean over positions of x^p)^(1/p), (N, C, H, W) -> (N, C).

    The clamp keeps x^p defined for the non-positive values an attention head can produce.
    """
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def position_attention(i: torch.Tensor, j: torch.Tensor, k: torch.Tensor, l: torch.Tensor,  # noqa: E741 - eq. 4-5
                       alpha: torch.Tensor) -> torch.Tensor:
    """Spatial attention, eq. 4-5: P_j = alpha * sum_i s_ji L_i + I_j, s_ji = softmax_i(J_i . K_j).

    i, l: (B, C, H, W); j, k: (B, C', H, W) from the three convolutions.
    """
    b, c, h, w = i.shape
    jf, kf, lf = j.flatten(2), k.flatten(2), l.flatten(2)      # (B, C', N), (B, C', N), (B, C, N)
    energy = torch.bmm(kf.transpose(1, 2), jf)                 # (B, N, N): [j, i] = K_j . J_i
    s = energy.softmax(dim=-1)                                 # normalised over i, eq. 4
    out = torch.bmm(lf, s.transpose(1, 2))                     # (B, C, N): [c, j] = sum_i s_ji L_ci
    return alpha * out.view(b, c, h, w) + i


def channel_attention(i: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Channel attention, eq. 6-7: Q_j = beta * sum_i x_ji I_i + I_j, x_ji = softmax_i(I_i . I_j).

    No convolutions: the feature map attends to itself across channels. i: (B, C, H, W).
    """
    b, c, h, w = i.shape
    f = i.flatten(2)                                           # (B, C, N)
    x = torch.bmm(f, f.transpose(1, 2)).softmax(dim=-1)        # (B, C, C): [j, i], normalised over i
    return beta * torch.bmm(x, f).view(b, c, h, w) + i
