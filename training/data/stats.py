"""Normalisation statistics of a set of images (the training split), on the 0-1 scale the ONNX contract uses."""
from __future__ import annotations

import torch


def band_stats(images: torch.Tensor, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation of uint8 (N, C, H, W) images, scaled to 0-1."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].double().div_(255.0)
        total += block.sum(dim=(0, 2, 3))
        squares += block.pow(2).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp(min=1e-12).sqrt()
    return [float(v) for v in mean], [float(v) for v in std]
