"""Hit thumbnails as QImages, made on the UI thread from the pixels that the search task read
(thumbnail_pixels.read_thumbnails, in its worker thread). QPixmaps, which are not thread-safe, are made
from these QImages by the dock.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from qgis.PyQt.QtGui import QImage

if TYPE_CHECKING:  # numpy is imported when a thumbnail is made, not when QGIS loads the plugin
    import numpy as np


def to_qimage(rgb: np.ndarray) -> QImage:
    """(h, w, 3) uint8 -> QImage that owns its pixels (the numpy buffer may be freed afterwards)."""
    import numpy as np

    height, width, _ = rgb.shape
    data = np.ascontiguousarray(rgb, dtype=np.uint8)
    return QImage(data.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
