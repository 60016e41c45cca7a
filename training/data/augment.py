"""Batch augmentation for overhead imagery, run on the training device.

One affine resampling per image does the random resized crop, the rotation (a multiple of 90 degrees,
or the rotation a rotated copy of RI-SNCA asks for) and the flip; a mild colour jitter follows, then
the normalisation. A rotated crop is shrunk until it lies inside the image, so a 45-degree rotation
never shows the empty corners: it samples the largest rotated square the image contains. The random
numbers come from a CPU generator, so a seed gives the same batches on every device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ITU-R 601 luma weights, for the saturation jitter of RGB images.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentSettings:
    crop_scale: tuple[float, float] = (0.5, 1.0)      # crop area as a fraction of the image
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio
    jitter: float = 0.2                               # brightness/contrast/saturation factors in 1 +- jitter
    flip: bool = True
    rot90: bool = True


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """float (N, C, H, W) in 0-1 -> (x - mean) / std with per-band (C,) statistics."""
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in 0-1."""
    return images.float().div_(255.0)


def affine(angle_deg: torch.Tensor, width: torch.Tensor, height: torch.Tensor, cx: torch.Tensor,
           cy: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine_grid matrices: output [-1, 1]^2 -> centre + R(angle) diag(width, height) flip.

    width, height: half-sizes of the sampled box in normalised coordinates (1 = the whole image).
    """
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a), torch.sin(a)
    fx = torch.where(flip, -1.0, 1.0)
    theta = torch.stack([
        torch.stack([cos * width * fx, -sin * height, cx], dim=1),
        torch.stack([sin * width * fx, cos * height, cy], dim=1),
    ], dim=1)
    return theta


def fit_inside(angle_deg: torch.Tensor, width: torch.Tensor, height: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Shrink (width, height) so that the box rotated by angle fits in [-1, 1]^2; also return its half-extents."""
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a).abs(), torch.sin(a).abs()
    ex, ey = width * c + height * s, width * s + height * c
    shrink = torch.clamp(1.0 / torch.maximum(ex, ey), max=1.0)
    return width * shrink, height * shrink, ex * shrink, ey * shrink


def sample_geometry(n: int, settings: AugmentSettings, generator: torch.Generator,
                    angles: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop + rotation + flip matrices for n images; `angles` (degrees) replaces the random 90s."""
    u = torch.rand(n, 6, generator=generator, dtype=torch.float64)
    lo, hi = settings.crop_scale
    area = lo + (hi - lo) * u[:, 0]
    log_r = math.log(settings.crop_ratio[0]) + (math.log(settings.crop_ratio[1]) - math.log(settings.crop_ratio[0])) * u[:, 1]
    width = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)
    height = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)
    if angles is None:
        quarter = (u[:, 2] * 4).floor().clamp(max=3) if settings.rot90 else torch.zeros(n, dtype=torch.float64)
        angles = quarter * 90.0
    width, height, ex, ey = fit_inside(angles.double(), width, height)
    cx = (2 * u[:, 3] - 1) * (1 - ex).clamp(min=0)
    cy = (2 * u[:, 4] - 1) * (1 - ey).clamp(min=0)
    flip = (u[:, 5] < 0.5) & settings.flip
    return affine(angles.double(), width, height, cx, cy, flip).float()


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample float (N, C, H, W) with (N, 2, 3) matrices to the same size."""
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and (for 3 bands) saturation factors in 1 +- strength; x in 0-1."""
    if strength <= 0:
        return x
    n = x.shape[0]
    f = (1 + strength * (2 * torch.rand(n, 3, generator=generator) - 1)).to(x.device).view(n, 3, 1, 1, 1)
    x = x * f[:, 0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[:, 1] + mean
    if x.shape[1] == 3:
        grey = (x * torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        x = (x - grey) * f[:, 2] + grey
    return x.clamp(0.0, 1.0)


def augment(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, settings: AugmentSettings,
            generator: torch.Generator, angles: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N, C, S, S) on the device -> augmented, normalised float32 (N, C, S, S)."""
    x = warp(to_unit(images), sample_geometry(images.shape[0], settings, generator, angles))
    return normalize(colour_jitter(x, settings.jitter, generator), mean, std)


def rotation_matrices(n: int, degrees: float) -> torch.Tensor:
    """(n, 2, 3) matrices turning images by `degrees` about the centre; off the right angles they sample
    the largest rotated square the image contains, so no empty corner shows."""
    angle = torch.full((n,), float(degrees), dtype=torch.float64)
    one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    width, height, _, _ = fit_inside(angle, one, one)
    return affine(angle, width, height, zero, zero, torch.zeros(n, dtype=torch.bool)).float()


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate float (N, C, S, S) by `degrees` (the test protocol for rotated queries)."""
    return warp(x, rotation_matrices(x.shape[0], degrees))
