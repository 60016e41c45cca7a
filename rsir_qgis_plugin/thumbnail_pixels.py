"""Hit thumbnails' pixels, read with rasterio in the search task's worker thread (no Qt here).

`read_thumbnails` runs in a QgsTask's worker thread (file I/O and resampling must not block the
UI) and returns plain numpy arrays; gui/thumbnails.py turns them into QImages on the UI thread.
It lives outside gui/ so that tasks.py never imports the GUI.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # numpy is imported when a thumbnail is made, not when QGIS loads the plugin
    import numpy as np

THUMBNAIL_PX = 112
RASTER_NOT_FOUND = "raster not found"
UNREADABLE = "thumbnail not readable"


def read_thumbnails(hits: Sequence, size: int = THUMBNAIL_PX,
                    is_cancelled: Callable[[], bool] | None = None) -> dict[int, np.ndarray]:
    """rank -> (h, w, 3) uint8 of each hit's window, with the bands and stretch the model was fed.

    A raster that cannot be read gives no thumbnail (the hit is still listed); the search result
    matters more than its picture.
    """
    images: dict = {}
    for hit in hits:
        if is_cancelled is not None and is_cancelled():
            break
        try:
            images[hit.rank] = _read_window(hit, size)
        except Exception:  # noqa: BLE001 - an unreadable raster only costs its thumbnails
            continue
    return images


def thumbnail_problems(hits: Sequence, thumbnails: dict) -> dict[int, str]:
    """rank -> why a hit has no thumbnail: its raster is gone from disk, or could not be read.

    Only hits without a thumbnail are looked at, each raster's file once."""
    from pathlib import Path

    gone: dict[str, bool] = {}
    problems = {}
    for hit in hits:
        if hit.rank in thumbnails:
            continue
        if hit.raster not in gone:
            gone[hit.raster] = not Path(hit.raster).exists()
        problems[hit.rank] = RASTER_NOT_FOUND if gone[hit.raster] else UNREADABLE
    return problems


def _read_window(hit, size: int) -> np.ndarray:
    import numpy as np
    from rasterio.windows import Window

    from .core.raster import open_dataset, to_uint8

    col, row, width, height = (int(v) for v in hit.window)
    scale = size / max(width, height)
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    bands = list(hit.bands[:3]) if len(hit.bands) >= 3 else [hit.bands[0]] * 3
    stretch = hit.stretch[:3] if hit.stretch and len(hit.stretch) >= 3 else (
        (hit.stretch[0],) * 3 if hit.stretch else None)
    with open_dataset(hit.raster) as dataset:
        pixels = dataset.read(bands, window=Window(col, row, width, height),
                              out_shape=(3, out_h, out_w), boundless=True, fill_value=0)
    rgb = to_uint8(pixels, stretch)
    return np.ascontiguousarray(np.transpose(rgb, (1, 2, 0)))
