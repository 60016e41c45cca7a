"""A query box checked before anything is embedded: four finite numbers, a place on the raster, and
enough pixels of it to show a pattern (box queries, feedback boxes and image queries alike)."""
from __future__ import annotations

import math

import numpy as np

from .errors import RasterError, RsirError
from .geometry import crs_from, crs_name, reproject_bounds
from .tiling import window_bounds

# The smallest query, in pixels of the query raster on its shorter side. The model sees every query
# enlarged to its input (128 px for the bundled models, as the tiles are): a box of a few pixels becomes
# a smooth blur, whose embedding is close to that of any featureless tile and so scores 0.95 against
# hundreds of them, confidently and meaninglessly. 8 px enlarged to 128 is 16x, about the most a
# bilinear read keeps edges through; it is also where a parking row or a roof first spans a few pixels.
# The QGIS map tool uses it to refuse a drag before a search starts.
MIN_QUERY_BOX_PX = 8

# A box reprojected from another CRS lands a hair off the pixel grid: snap within 1/100 pixel.
PIXEL_SNAP = 0.01


def box_big_enough(width_px: float, height_px: float) -> bool:
    """Whether a box of this size in pixels of the query raster is large enough to be a query."""
    return min(width_px, height_px) >= MIN_QUERY_BOX_PX - PIXEL_SNAP


def too_small(path: str, what: str) -> RasterError:
    """The one-line error for a query smaller than MIN_QUERY_BOX_PX; `what` names it and its size."""
    return RasterError(path, f"{what}, too few to search with: a query needs at least {MIN_QUERY_BOX_PX} "
                             "pixels on each side")


def size_px(width_px: float, height_px: float) -> str:
    """'2 x 2', '0.4 x 0.4': a size in pixels as a user reads it."""
    return " x ".join(f"{v:.0f}" if abs(v - round(v)) < PIXEL_SNAP else f"{v:.2g}"
                      for v in (width_px, height_px))


def checked_box(bbox) -> tuple[float, float, float, float]:
    """The box as four finite numbers with XMIN < XMAX and YMIN < YMAX; an error saying what is wrong."""
    try:
        box = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise RsirError(f"the query box must be four numbers XMIN YMIN XMAX YMAX, got {bbox!r}") from None
    if len(box) != 4:
        raise RsirError(f"the query box must be four numbers XMIN YMIN XMAX YMAX, got {len(box)}")
    if not all(math.isfinite(v) for v in box):
        raise RsirError(f"the query box {box} holds a value that is not a finite number")
    if box[0] == box[2] or box[1] == box[3]:
        equal = "XMIN equals XMAX" if box[0] == box[2] else "YMIN equals YMAX"
        raise RsirError(f"the query box {fmt_box(box)} has zero area ({equal}); a query needs an area")
    if box[0] > box[2] or box[1] > box[3]:
        raise RsirError(f"the query box {fmt_box(box)} is inverted: give XMIN YMIN XMAX YMAX "
                        "with XMIN < XMAX and YMIN < YMAX")
    return box


def fmt_box(box) -> str:
    return "(" + ", ".join(f"{v:.8g}" if abs(v) < 1e5 else f"{v:.1f}" for v in box) + ")"


def pixel_window(source, bbox, bbox_crs: str | None) -> tuple[int, int, int, int]:
    """The box's pixel window, clipped to the raster; an error that says why when there is none.

    `source` is a RasterSource or an index's RasterEntry (path, crs_wkt, transform, width, height).
    """
    return _pixel_span(source, bbox, bbox_crs)[0]


def query_window(source, bbox, bbox_crs: str | None) -> tuple[int, int, int, int]:
    """The pixel window of a box that is to be read and embedded: as pixel_window, and an error when the
    part of the box on the raster is smaller than MIN_QUERY_BOX_PX on either side."""
    window, width_px, height_px = _pixel_span(source, bbox, bbox_crs)
    if not box_big_enough(width_px, height_px):
        given = f"the query box {fmt_box(bbox)}" + (f" in {crs_name(bbox_crs)}" if bbox_crs else "")
        raise too_small(source.path, f"{given} covers {size_px(width_px, height_px)} pixels of the raster")
    return window


def _pixel_span(source, bbox, bbox_crs: str | None) -> tuple[tuple[int, int, int, int], float, float]:
    """The box's pixel window clipped to the raster, and the clipped box's exact width and height in
    pixels (the window is rounded out to whole pixels)."""
    from affine import Affine

    given = f"the query box {fmt_box(bbox)}" + (f" in {crs_name(bbox_crs)}" if bbox_crs else "")
    box = reproject_bounds(bbox, bbox_crs or "", source.crs_wkt)
    if not all(math.isfinite(v) for v in box):
        hint = ""
        if bbox_crs and crs_from(bbox_crs).is_geographic and not _looks_geographic(bbox):
            hint = f" (in {crs_name(bbox_crs)} it would be longitude/latitude in degrees)"
        raise RasterError(source.path, f"{given} has no position in the raster's CRS "
                                       f"({crs_name(source.crs_wkt)}); is the box's CRS right?{hint}")
    inverse = ~Affine(*source.transform)
    corners = [inverse * (x, y) for x in (box[0], box[2]) for y in (box[1], box[3])]
    cols, rows = [c[0] for c in corners], [c[1] for c in corners]
    left, right = max(0.0, min(cols)), min(float(source.width), max(cols))
    top, bottom = max(0.0, min(rows)), min(float(source.height), max(rows))
    col0 = max(0, int(np.floor(min(cols) + PIXEL_SNAP)))
    col1 = min(source.width, int(np.ceil(max(cols) - PIXEL_SNAP)))
    row0 = max(0, int(np.floor(min(rows) + PIXEL_SNAP)))
    row1 = min(source.height, int(np.ceil(max(rows) - PIXEL_SNAP)))
    if col1 - col0 < 1 or row1 - row0 < 1:
        extent = fmt_box(window_bounds(source.transform, (0, 0, source.width, source.height)))
        where = f" (= {fmt_box(box)} in the raster's CRS)" if box != bbox else ""
        hint = ""
        if not bbox_crs and _looks_geographic(bbox) and _is_projected(source.crs_wkt):
            hint = "; the box looks like longitude/latitude: give its CRS, --crs EPSG:4326"
        raise RasterError(source.path, f"{given}{where} does not overlap the raster, which covers {extent} "
                                       f"in {crs_name(source.crs_wkt)}{hint}")
    return (col0, row0, col1 - col0, row1 - row0), right - left, bottom - top


def _looks_geographic(box) -> bool:
    return box[0] >= -180.0 and box[2] <= 360.0 and box[1] >= -90.0 and box[3] <= 90.0


def _is_projected(crs_wkt: str) -> bool:
    return bool(crs_wkt) and crs_from(crs_wkt).is_projected
