"""Scene datasets laid out as a folder of class folders (UC Merced, AID, NWPU-RESISC45, WHU-RS19, EuroSAT).

Images are JPEG/PNG/TIFF; GeoTIFFs (any band count, any dtype) are read with rasterio when it is
installed. Every image is decoded once into a uint8 (C, S, S) tensor: centre-cropped to a square and
resized to the model's input size, so that training augments and evaluation feeds what the plugin
feeds (pixels / 255 at the model's input size).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class SceneFolder:
    """The images of a class-folder dataset: paths relative to root, with class indices."""

    root: Path
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    labels: tuple[int, ...]


def scan_folder(root: str | Path, classes: Sequence[str] = (), limit_per_class: int = 0) -> SceneFolder:
    """List the images of `root`/<class>/*, sorted; optionally only some classes or the first N per class."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    chosen = tuple(classes) or tuple(found)
    missing = sorted(set(chosen) - set(found))
    if missing:
        raise ValueError(f"{root}: no class folder(s) {missing}; found {found}")
    paths, labels = [], []
    for label, name in enumerate(chosen):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if limit_per_class > 0:
            files = files[:limit_per_class]
        paths += [str(p.relative_to(root)) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders")
    return SceneFolder(root, chosen, tuple(paths), tuple(labels))


def stretch_to_uint8(bands: np.ndarray) -> np.ndarray:
    """uint8 stays as is; other dtypes get a per-band 2-98 % percentile stretch to 0-255."""
    if bands.dtype == np.uint8:
        return bands
    data = bands.astype(np.float64)
    lo = np.percentile(data, 2, axis=(1, 2), keepdims=True)
    hi = np.percentile(data, 98, axis=(1, 2), keepdims=True)
    scaled = (data - lo) / np.maximum(hi - lo, 1e-12)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _read_pil(path: Path, bands: Sequence[int]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB")).transpose(2, 0, 1)  # (3, H, W)
    if max(bands) > array.shape[0]:
        raise ValueError(f"{path}: has {array.shape[0]} bands, bands {list(bands)} were asked for")
    return array[[b - 1 for b in bands]]


def _read_tiff(path: Path, bands: Sequence[int]) -> np.ndarray:
    try:
        import rasterio
    except ImportError:  # 8-bit RGB TIFFs (UC Merced) still open with Pillow
        return _read_pil(path, bands)
    with rasterio.open(path) as src:
        if max(bands) > src.count:
            raise ValueError(f"{path}: has {src.count} bands, bands {list(bands)} were asked for")
        return src.read(indexes=list(bands))


READERS: dict[str, Callable[[Path, Sequence[int]], np.ndarray]] = {
    ".jpg": _read_pil, ".jpeg": _read_pil, ".png": _read_pil, ".tif": _read_tiff, ".tiff": _read_tiff,
}


def read_image(path: str | Path, bands: Sequence[int]) -> np.ndarray:
    """The chosen bands (1-based) of an image as uint8 (C, H, W)."""
    path = Path(path)
    return stretch_to_uint8(READERS[path.suffix.lower()](path, bands))


def square_resize(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, size, size): centre square crop, then antialiased bilinear resize."""
    c, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(image[:, top:top + side, left:left + side]))
    if side == size:
        return square
    resized = F.interpolate(square[None].float(), size=(size, size), mode="bilinear",
                            antialias=True, align_corners=False)[0]
    return resized.round().clamp(0, 255).to(torch.uint8)


class _Decoded(Dataset):
    def __init__(self, root: Path, paths: Sequence[str], bands: Sequence[int], size: int, tile_size: int):
        self.root, self.paths, self.bands, self.size, self.tile_size = root, paths, tuple(bands), size, tile_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = square_resize(read_image(self.root / self.paths[i], self.bands), self.tile_size)
        return image if self.tile_size == self.size else square_resize(image.numpy(), self.size)


def load_images(root: str | Path, paths: Sequence[str], bands: Sequence[int], size: int,
                workers: int = 0, tile_size: int | None = None) -> torch.Tensor:
    """Decode `paths` under `root` into one uint8 (N, C, size, size) tensor, `workers` processes in parallel.

    tile_size: each image is first resized to this side, then to `size`, as the engine reads a model's
    footprint of a raster and resamples it to the input (None: straight to `size`).
    """
    if not paths:
        return torch.empty(0, len(bands), size, size, dtype=torch.uint8)
    decoded = _Decoded(Path(root), paths, bands, size, tile_size or size)
    loader = DataLoader(decoded, batch_size=64, num_workers=workers)
    return torch.cat(list(loader))
