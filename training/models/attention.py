"""Attention heads applied to the backbone's last feature map, by name: (B, C, H, W) -> (B, C, H, W).

- gap: no attention; the feature map goes straight to pooling (the papers' plain backbone baseline).
- dual_attention: paper 000 section 3.2 (after Fu et al.'s DANet): spatial attention with three
  convolutions J, K, L and scale alpha (eq. 4-5), channel attention without convolutions and scale beta
  (eq. 6-7), both scales initialised to 0; the two outputs are summed and passed through a convolution.
- icsa: paper 002: an input-independent channel weight (C x 1 x 1) times a spatial weight (1 x H x W).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .functional import channel_attention, position_attention


class DualAttention(nn.Module):
    """Spatial + channel self-attention, fused by a sum and a 1x1 convolution (paper 000, Fig. 2).

    The paper's J, K, L keep all C channels; `reduction` > 1 shrinks J and K to C/reduction as DANet
    does, which saves memory on 2048-channel ResNet-50 maps. The fusing convolution starts as 0.5 * I,
    so with alpha = beta = 0 the whole head is the identity and a pretrained backbone's features reach
    the pooling unchanged at the start of training.
    """

    def __init__(self, channels: int, reduction: int = 1):
        super().__init__()
        inner = max(1, channels // reduction)
        self.j = nn.Conv2d(channels, inner, 1)
        self.k = nn.Conv2d(channels, inner, 1)
        self.l = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.beta = nn.Parameter(torch.zeros(1))
        self.fuse = nn.Conv2d(channels, channels, 1)
        with torch.no_grad():
            self.fuse.weight.copy_(0.5 * torch.eye(channels).view(channels, channels, 1, 1))
            self.fuse.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Softmax over thousands of dot products saturates in half precision: attend in float32.
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            p = position_attention(xf, self.j(xf), self.k(xf), self.l(xf), self.alpha)
            q = channel_attention(xf, self.beta)
            return self.fuse(p + q).to(x.dtype)


class ICSA(nn.Module):
    """Independent channel-wise and spatial attention (paper 002, eq. 6-8): x * A_channel * A_spatial.

    Both weights start at 1 (the trained weights in the paper stay near 0.99). The spatial weight is
    sized for the feature map of the model's input size and resampled if another size comes in.
    """

    def __init__(self, channels: int, feature_size: tuple[int, int]):
        super().__init__()
        self.channel = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.spatial = nn.Parameter(torch.ones(1, 1, *feature_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = self.spatial
        if spatial.shape[-2:] != x.shape[-2:]:
            spatial = F.interpolate(spatial, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * self.channel * spatial


# name -> factory(channels, feature_size (H, W), options dict)
HEADS: dict[str, Callable[[int, tuple[int, int], dict], nn.Module]] = {
    "gap": lambda c, hw, o: nn.Identity(),
    "dual_attention": lambda c, hw, o: DualAttention(c, int(o.get("reduction", 1))),
    "icsa": lambda c, hw, o: ICSA(c, hw),
}
