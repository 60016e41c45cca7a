"""Test and evaluation images as the engine feeds them: uint8 (N, bands, S, S), then normalised."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rsir_qgis_plugin.core.model import ModelContract


def load_rgb(path: str | Path, size: int) -> np.ndarray:
    """One image file as uint8 (3, size, size), resized bilinearly like the engine resamples tiles."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_rgb_batch(paths: Sequence[str | Path], size: int) -> np.ndarray:
    return np.stack([load_rgb(path, size) for path in paths])


def synthetic_images(count: int, bands: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, bands, size, size): odd indices uniform noise, even ones smooth fields with texture.

    Noise alone drives a network into activation ranges real scenes never reach; the smooth fields
    (coarse random grids upsampled, plus mild grain) look more like fields, roofs and water.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, bands, size, size), dtype=np.uint8)
    cells = max(2, size // 16)
    for index in range(0, count, 2):
        coarse = rng.uniform(0, 255, size=(bands, cells, cells))
        field = _upsample_bilinear(coarse, size) + rng.normal(0, 8, size=(bands, size, size))
        images[index] = np.clip(field, 0, 255).astype(np.uint8)
    return images


def to_model_input(pixels: np.ndarray, contract: ModelContract) -> np.ndarray:
    """uint8 (N, bands, S, S) to float32 (pixel/255 - mean)/std per band, as the engine does."""
    mean = np.asarray(contract.mean, np.float32)[None, :, None, None]
    std = np.asarray(contract.std, np.float32)[None, :, None, None]
    return ((pixels.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def _upsample_bilinear(grid: np.ndarray, size: int) -> np.ndarray:
    """(C, h, w) -> (C, size, size), as two interpolation matrices (h, w >= 2)."""
    rows, cols = _interpolation_matrix(grid.shape[1], size), _interpolation_matrix(grid.shape[2], size)
    return np.einsum("yh,chw,xw->cyx", rows, grid, cols)


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    position = np.linspace(0, n_in - 1, n_out)
    low = np.clip(np.floor(position).astype(int), 0, n_in - 2)
    frac = position - low
    matrix = np.zeros((n_out, n_in))
    matrix[np.arange(n_out), low] = 1 - frac
    matrix[np.arange(n_out), low + 1] += frac
    return matrix
