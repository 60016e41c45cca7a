"""Opening rasters and deciding how their pixels become model input: bands and stretch."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RasterError

STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_SAMPLE_PX = 1024  # longest side of the decimated read the percentiles come from


@dataclass(frozen=True)
class Fingerprint:
    """Identity of a raster file on disk: a changed size or mtime means re-index."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RasterSource:
    """A raster as the tiler sees it: geometry, the bands fed to the model and their stretch."""

    fingerprint: Fingerprint
    width: int
    height: int
    crs_wkt: str  # "" when the raster has no CRS
    transform: tuple[float, float, float, float, float, float]  # affine a, b, c, d, e, f
    bands: tuple[int, ...]  # 1-based, one per model input channel (may repeat a grey band)
    stretch: tuple[tuple[float, float], ...] | None  # per band (low, high); None: uint8 used as is

    @property
    def path(self) -> str:
        return self.fingerprint.path


def fingerprint(path: str | Path) -> Fingerprint:
    resolved = Path(path).expanduser().resolve()
    try:
        stat = os.stat(resolved)
    except OSError as exc:
        raise RasterError(resolved, f"cannot be read ({exc.strerror or exc})") from exc
    return Fingerprint(str(resolved), stat.st_size, stat.st_mtime_ns)


def open_dataset(path: str | Path):
    """Open a raster with rasterio, turning every failure into a RasterError that names the file."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            # Plain images (JPEG/PNG queries) have no georeferencing, and need none.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(str(path))
    except (RasterioError, OSError) as exc:
        raise RasterError(path, f"not a readable raster ({exc})") from exc


def choose_bands(dataset, requested: tuple[int, ...] | None, model_bands: int, path: str) -> tuple[int, ...]:
    """The bands fed to the model: as requested, else RGB by colour interpretation, else the first ones."""
    count = dataset.count
    if requested is not None:
        bad = [b for b in requested if b > count]
        if bad:
            raise RasterError(path, f"has {count} band(s); band(s) {bad} requested")
        if len(requested) != model_bands:
            raise RasterError(path, f"{len(requested)} band(s) requested but the model takes {model_bands}")
        return tuple(requested)
    from rasterio.enums import ColorInterp

    interp = list(dataset.colorinterp)
    if model_bands == 3:
        rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if all(c in interp for c in rgb):
            return tuple(interp.index(c) + 1 for c in rgb)
        if count == 1 or (count == 2 and interp[1] == ColorInterp.alpha):
            return (1, 1, 1)  # a grey raster: the same band on every channel
    data_bands = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
    if len(data_bands) < model_bands:
        raise RasterError(path, f"has {len(data_bands)} data band(s); the model needs {model_bands}")
    return tuple(data_bands[:model_bands])


def compute_stretch(dataset, bands: tuple[int, ...]) -> tuple[tuple[float, float], ...] | None:
    """Per-band 2-98 % percentiles from a decimated read (overviews when present); None for uint8."""
    if all(dataset.dtypes[b - 1] == "uint8" for b in bands):
        return None
    scale = max(dataset.width, dataset.height) / STRETCH_SAMPLE_PX
    shape = (max(1, round(dataset.height / max(scale, 1))), max(1, round(dataset.width / max(scale, 1))))
    unique = sorted(set(bands))
    sample = dataset.read(unique, out_shape=(len(unique), *shape), masked=True)
    limits = {}
    for i, band in enumerate(unique):
        values = sample[i].compressed() if np.ma.is_masked(sample[i]) else np.asarray(sample[i]).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits[band] = (0.0, 1.0)
            continue
        low, high = np.percentile(values, STRETCH_PERCENTILES)
        limits[band] = (float(low), float(high) if high > low else float(low) + 1.0)
    return tuple(limits[b] for b in bands)


def describe(path: str | Path, requested_bands: tuple[int, ...] | None, model_bands: int) -> RasterSource:
    """Open a raster once to decide its bands and stretch; raises RasterError for unusable files."""
    print_path = str(path)
    fp = fingerprint(path)
    with open_dataset(fp.path) as dataset:
        if dataset.width < 1 or dataset.height < 1 or dataset.count < 1:
            raise RasterError(print_path, "has no pixels")
        bands = choose_bands(dataset, requested_bands, model_bands, print_path)
        try:
            stretch = compute_stretch(dataset, bands)
        except Exception as exc:  # GDAL raises RasterioIOError, CPLE_* and others on damaged data
            raise RasterError(print_path, f"pixels cannot be read ({exc})") from exc
        crs_wkt = dataset.crs.to_wkt() if dataset.crs else ""
        return RasterSource(fingerprint=fp, width=dataset.width, height=dataset.height, crs_wkt=crs_wkt,
                            transform=tuple(dataset.transform)[:6], bands=bands, stretch=stretch)


def to_uint8(pixels: np.ndarray, stretch: tuple[tuple[float, float], ...] | None) -> np.ndarray:
    """(bands, H, W) of any dtype to uint8 with the raster's stretch (uint8 passes through)."""
    if stretch is None:
        return pixels.astype(np.uint8, copy=False)
    low = np.array([s[0] for s in stretch], dtype=np.float32)[:, None, None]
    span = np.array([s[1] - s[0] for s in stretch], dtype=np.float32)[:, None, None]
    scaled = (pixels.astype(np.float32) - low) * (255.0 / span)
    return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
