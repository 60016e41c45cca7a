"""Batch augmentation for overhead imagery, run on the training device.

One affine resampling per image does the random resized crop, the rotation (a multiple of 90 degrees,
or the rotation a rotated copy of RI-SNCA asks for) and the flip; a mild colour jitter follows, then
the normalisation. Off by default, for imagery of other sensors and ground sample distances: a coarser
ground resolution (downsample by a random factor, then back up), a Gaussian blur, per-band gains (another
sensor's colour response) and haze (a blend toward a bright airlight), each applied to an image with
probability `degrade_p`; they draw random numbers only when on, so the default batches stay the same.
A rotated crop is shrunk until it lies inside the image, so a 45-degree rotation
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
    gsd_range: tuple[float, float] = (1.0, 1.0)       # downsample factor range (log-uniform); 1: off
    blur_sigma: float = 0.0                           # Gaussian blur sigma in pixels, uniform in 0-max; 0: off
    band_jitter: float = 0.0                          # per-band gain factors in 1 +- band_jitter; 0: off
    haze: float = 0.0                                 # haze blend weight, uniform in 0-max; 0: off
    degrade_p: float = 0.5                            # probability of each of the four above, per image


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
    low_ratio, high_ratio = (math.log(r) for r in settings.crop_ratio)
    log_r = low_ratio + (high_ratio - low_ratio) * u[:, 1]
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


def _chosen(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """(n,) bool: which images get an augmentation of probability p."""
    return torch.rand(n, generator=generator) < p


def coarsen(x: torch.Tensor, factors: tuple[float, float], p: float, generator: torch.Generator) -> torch.Tensor:
    """Simulate a coarser ground sample distance: each chosen image of float (N, C, S, S) is downsampled
    (antialiased) by a log-uniform factor in `factors`, then resized back to S bilinearly."""
    lo, hi = factors
    if hi <= 1.0:
        return x
    n, size = x.shape[0], x.shape[-1]
    chosen = _chosen(n, p, generator)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    f = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    out = x.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        small = max(2, round(size / float(f[i])))
        if small >= size:
            continue
        low = F.interpolate(x[i:i + 1], size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + 1] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return out


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, 2 radius + 1) normalised 1-D Gaussian kernels; sigma 0 gives the identity kernel."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigma.float().clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-0.5 * (t / s) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def blur(x: torch.Tensor, max_sigma: float, p: float, generator: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur of each chosen image of float (N, C, H, W), sigma uniform in 0-max_sigma."""
    if max_sigma <= 0:
        return x
    n, c, h, w = x.shape
    sigma = max_sigma * torch.rand(n, generator=generator)
    chosen = torch.nonzero(_chosen(n, p, generator)).flatten().to(x.device)
    m = chosen.numel()
    if m == 0:
        return x
    radius = max(1, math.ceil(3 * max_sigma))
    k = gaussian_kernels(sigma[chosen.cpu()], radius).to(x.device).repeat_interleave(c, dim=0)  # (M*C, 2r+1)
    y = F.pad(x[chosen].reshape(1, m * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(m * c, 1, 1, -1), groups=m * c)
    y = F.conv2d(y, k.view(m * c, 1, -1, 1), groups=m * c)
    out = x.clone()
    out[chosen] = y.view(m, c, h, w)
    return out


def band_gain(x: torch.Tensor, strength: float, p: float, generator: torch.Generator) -> torch.Tensor:
    """Multiply each band of each chosen image of float (N, C, H, W) by its own factor in 1 +- strength."""
    if strength <= 0:
        return x
    n, c = x.shape[:2]
    gain = 1 + strength * (2 * torch.rand(n, c, generator=generator) - 1)
    gain = torch.where(_chosen(n, p, generator).view(n, 1), gain, torch.ones_like(gain))
    return (x * gain.to(x.device).view(n, c, 1, 1)).clamp(0.0, 1.0)


def add_haze(x: torch.Tensor, strength: float, p: float, generator: torch.Generator) -> torch.Tensor:
    """Haze on each chosen image of float (N, C, H, W) in 0-1: (1 - t) x + t A with t uniform in 0-strength
    and a bright, slightly uneven airlight A in 0.75-1 per band."""
    if strength <= 0:
        return x
    n, c = x.shape[:2]
    t = strength * torch.rand(n, generator=generator) * _chosen(n, p, generator)
    airlight = 0.75 + 0.25 * torch.rand(n, c, generator=generator)
    t, airlight = t.to(x.device).view(n, 1, 1, 1), airlight.to(x.device).view(n, c, 1, 1)
    return (1 - t) * x + t * airlight


def degrade(x: torch.Tensor, settings: AugmentSettings, generator: torch.Generator) -> torch.Tensor:
    """The sensor and ground-resolution augmentations of float (N, C, S, S) in 0-1 (each off by default)."""
    p = settings.degrade_p
    x = coarsen(x, settings.gsd_range, p, generator)
    x = blur(x, settings.blur_sigma, p, generator)
    x = band_gain(x, settings.band_jitter, p, generator)
    return add_haze(x, settings.haze, p, generator)


def augment(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, settings: AugmentSettings,
            generator: torch.Generator, angles: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N, C, S, S) on the device -> augmented, normalised float32 (N, C, S, S)."""
    x = warp(to_unit(images), sample_geometry(images.shape[0], settings, generator, angles))
    x = degrade(colour_jitter(x, settings.jitter, generator), settings, generator)
    return normalize(x, mean, std)


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
