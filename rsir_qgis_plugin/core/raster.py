"""Opening rasters and deciding how their pixels become model input: bands and stretch."""
from __future__ import annotations

import errno
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RasterError, RasterMissingError
from .geometry import crs_name, lonlat_points, reaches_lonlat

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


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def resolve_raster_path(path: str | Path) -> str:
    """The absolute, link-free path of a raster file, checked to be a regular file before anything opens it.

    Raises RasterMissingError when nothing is there (a dangling link included): only then may an
    index drop the raster. Raises RasterError for a symlink loop or anything but a regular file
    (GDAL would block forever reading a FIFO), which stay in an index as failures.
    """
    return _resolve(path)[0]


def _resolve(path: str | Path) -> tuple[str, os.stat_result]:
    given = os.path.abspath(os.path.expanduser(str(path)))
    try:
        info = os.stat(given)  # follows links; fails on loops
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RasterError(given, "symlink loop (a link leads back to itself); fix or remove the link") from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise RasterMissingError(given, "gone from disk (no such file)") from exc
        raise RasterError(given, f"cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(info.st_mode)), "an unknown kind of file")
        raise RasterError(given, f"not a regular file ({kind})")
    try:
        resolved = Path(given).resolve(strict=True)
    except (RuntimeError, OSError) as exc:  # the path changed since the stat above
        raise RasterError(given, f"cannot be resolved ({exc})") from exc
    return str(resolved), info


def fingerprint(path: str | Path) -> Fingerprint:
    resolved, info = _resolve(path)
    return Fingerprint(resolved, info.st_size, info.st_mtime_ns)


def open_dataset(path: str | Path):
    """Open a raster with rasterio, turning every failure into a RasterError that names the file.

    The path is checked first (resolve_raster_path), so no FIFO or device reaches GDAL.
    """
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    resolved = resolve_raster_path(path)
    _check_readable(path, resolved)
    try:
        with warnings.catch_warnings():
            # Plain images (JPEG/PNG queries) have no georeferencing, and need none.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(resolved)
    except Exception as exc:  # rasterio and GDAL raise RasterioIOError, CPLE_* and others
        if not os.path.exists(resolved):
            raise RasterMissingError(path, "gone from disk (no such file)") from exc
        raise RasterError(path, f"not a readable raster ({first_line(exc)})") from exc


def _check_readable(path, resolved: str) -> None:
    """Open the file once without blocking: a clear reason for unreadable files (GDAL would only say
    "not recognized"), and a last check that no FIFO was swapped in after the path was resolved."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        handle = os.open(resolved, flags)
    except FileNotFoundError as exc:
        raise RasterMissingError(path, "gone from disk (no such file)") from exc
    except OSError as exc:
        raise RasterError(path, f"cannot be read ({exc.strerror or exc})") from exc
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise RasterError(path, "not a regular file")
    finally:
        os.close(handle)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (GDAL's run to several), for one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    """Open a raster once to decide its bands and stretch; raises RasterError for unusable files
    (RasterMissingError when the file is gone)."""
    print_path = str(path)
    fp = fingerprint(path)
    with open_dataset(fp.path) as dataset:
        try:
            if dataset.width < 1 or dataset.height < 1 or dataset.count < 1:
                raise RasterError(print_path, "has no pixels")
            bands = choose_bands(dataset, requested_bands, model_bands, print_path)
            try:
                stretch = compute_stretch(dataset, bands)
            except Exception as exc:  # GDAL raises RasterioIOError, CPLE_* and others on damaged data
                raise RasterError(print_path, f"pixels cannot be read ({first_line(exc)})") from exc
            crs_wkt = dataset.crs.to_wkt() if dataset.crs else ""
            transform = tuple(dataset.transform)[:6]
            check_georeferencing(print_path, crs_wkt, transform, dataset.width, dataset.height)
        except RasterError:
            raise
        except Exception as exc:  # a damaged header or CRS read lazily by GDAL
            raise RasterError(print_path, f"cannot be read ({first_line(exc)})") from exc
        return RasterSource(fingerprint=fp, width=dataset.width, height=dataset.height, crs_wkt=crs_wkt,
                            transform=transform, bands=bands, stretch=stretch)


def check_georeferencing(path: str, crs_wkt: str, transform: tuple[float, ...], width: int,
                         height: int) -> None:
    """Refuse georeferencing that no tile position can come from, by name, before anything is embedded.

    A NaN or infinite geotransform would index tiles with NaN bounds (and break every search that meets
    them); a zero pixel size puts every pixel at one point; a projection that PROJ cannot compute even at
    the raster's centre (a Transverse Mercator with scale factor 0) gives no longitude/latitude at all.
    A local CRS, which has no way to longitude/latitude, is fine: its raster is searched on its own grid.
    """
    fix = "fix its georeferencing (e.g. gdal_edit.py -a_ullr XMIN YMAX XMAX YMIN, or -unsetgt)"
    values = ", ".join(f"{v:.10g}" for v in transform)
    if not all(math.isfinite(v) for v in transform):
        raise RasterError(path, f"its geotransform ({values}) holds a value that is not a finite number; "
                                f"{fix}")
    a, b, _, d, e, _ = transform
    if a * e - b * d == 0:
        raise RasterError(path, f"its geotransform ({values}) gives a zero pixel size; {fix}")
    if crs_wkt and reaches_lonlat(crs_wkt):
        x = a * width / 2 + b * height / 2 + transform[2]
        y = d * width / 2 + e * height / 2 + transform[5]
        lon, lat, reason = lonlat_points(crs_wkt, [x], [y])
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            why = reason or "PROJ gives no position"
            raise RasterError(path, f"its CRS ({crs_name(crs_wkt)}) cannot be transformed to longitude/"
                                    f"latitude at the raster's centre ({why}); give it a valid CRS "
                                    "(e.g. gdal_edit.py -a_srs EPSG:n)")


def to_uint8(pixels: np.ndarray, stretch: tuple[tuple[float, float], ...] | None) -> np.ndarray:
    """(bands, H, W) of any dtype to uint8 with the raster's stretch (uint8 passes through)."""
    if stretch is None:
        return pixels.astype(np.uint8, copy=False)
    low = np.array([s[0] for s in stretch], dtype=np.float32)[:, None, None]
    span = np.array([s[1] - s[0] for s in stretch], dtype=np.float32)[:, None, None]
    scaled = (pixels.astype(np.float32) - low) * (255.0 / span)
    return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
