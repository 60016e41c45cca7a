"""An image file as a query, brought to the ground scale of the indexed tiles before it is embedded.

The model compares what it sees at its input size, so a query must show the ground at about the scale
the tiles do: a 0.3 m photo of a parking lot covering 77 m, shrunk whole into the model's input, looks
nothing like a 13 m tile of parked cars. When the image's ground sample distance is known (from its
georeferencing, or given), the part of it that covers one tile's ground size, at its centre, is what is
embedded; an image smaller than a tile is embedded whole. Notes say when the scales are far apart, and
when the image's scale is unknown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import RasterError, RsirError
from .query_box import MIN_QUERY_BOX_PX, box_big_enough, size_px, too_small
from .raster import RasterSource
from .scales import ScaleWindow, centred_window, nearest_group, scale_groups, tile_scales, weighted_median
from .store import IndexReader
from .tiling import pixel_size_metres

SCALE_NOTE_RATIO = 2.0  # a note when the image's and the tiles' ground sizes are further apart than this


@dataclass(frozen=True)
class TileScale:
    """The ground size of the indexed tiles (side of a tile, metres): median over tiles, and the range."""

    median: float
    smallest: float
    largest: float

    def describe(self) -> str:
        if self.largest <= SCALE_NOTE_RATIO * self.smallest:
            return f"{metres(self.median)} m"
        return f"{metres(self.median)} m (median; from {metres(self.smallest)} to {metres(self.largest)} m)"


@dataclass(frozen=True)
class ImageQuery:
    """What of the image to embed (a pixel window), and notes for the user about its scale.

    `scales`: where the index holds tiles of several ground sizes (core/scales.py), the image's centre at
    each other group's size, embedded for that group's rasters; `window` is for the rest (the group of
    the tiles' median size, and rasters of unknown size)."""

    window: tuple[int, int, int, int]
    notes: tuple[str, ...] = ()
    scales: tuple[ScaleWindow, ...] = ()


def metres(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def image_gsd(source: RasterSource) -> float | None:
    """Metres a pixel of a georeferenced image (degrees converted at its centre), or None: no CRS, or a
    CRS without a size in metres (a local grid)."""
    if not source.crs_wkt:
        return None
    try:
        return pixel_size_metres(source)
    except RasterError:
        return None


def tile_scale(reader: IndexReader) -> TileScale | None:
    """The ground size of the index's tiles, from one real tile of each raster with a CRS, weighted by its
    tile count; None when no raster has a ground size (rasters without a CRS or in a local grid)."""
    scales = tile_scales(reader)
    if not scales.sizes:
        return None
    sizes = list(scales.sizes.values())
    median = weighted_median(sizes, [scales.counts[raster] for raster in scales.sizes])
    return TileScale(median=median, smallest=min(sizes), largest=max(sizes))


def plan_image_query(reader: IndexReader, source: RasterSource, given_gsd: float | None) -> ImageQuery:
    """The window of the image to embed, at the tiles' ground scale where the image's scale is known."""
    name = source.path
    width, height = source.width, source.height
    if not box_big_enough(width, height):
        raise too_small(name, f"the image is {size_px(width, height)} pixels")
    if given_gsd is not None and not (math.isfinite(given_gsd) and given_gsd > 0):
        raise RsirError(f"the image's ground sample distance must be a positive number of metres, "
                        f"got {given_gsd}")
    whole = (0, 0, width, height)
    tiles = tile_scale(reader)
    if tiles is None:
        return ImageQuery(whole)  # nothing indexed has a ground scale to match
    gsd = given_gsd if given_gsd is not None else image_gsd(source)
    if gsd is None:
        return ImageQuery(whole, (
            f"{name} has no ground scale (no georeferencing in metres): it is compared whatever its scale "
            f"with tiles of {tiles.describe()}; give its metres a pixel (--image-gsd) or resample it so "
            f"that it covers about {metres(tiles.median)} m",))
    scales = _other_scales(reader, width, height, gsd, tiles.median)
    covers = f"covers {metres(width * gsd)} x {metres(height * gsd)} m ({metres(gsd)} m a pixel)"
    ratio = math.sqrt(width * height) * gsd / tiles.median
    side = max(float(MIN_QUERY_BOX_PX), tiles.median / gsd)  # a tile's ground size in the image's pixels
    crop_w, crop_h = min(width, round(side)), min(height, round(side))
    window = ((width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h)
    if ratio > SCALE_NOTE_RATIO:
        note = (f"{name} {covers} and the indexed tiles {tiles.describe()}: its centre "
                f"{metres(crop_w * gsd)} x {metres(crop_h * gsd)} m ({crop_w} x {crop_h} px) was embedded, "
                "at the tiles' ground scale; crop the image to query another part of it")
        if side > tiles.median / gsd:
            note += (f" (its pixels are coarser than a tile's {metres(tiles.median)} m holds at "
                     f"{MIN_QUERY_BOX_PX} pixels: resample it finer or index larger tiles)")
        return ImageQuery(window, (note,), scales)
    if ratio < 1 / SCALE_NOTE_RATIO:
        return ImageQuery(window, (
            f"{name} {covers}, much less than the indexed tiles' {tiles.describe()}: it is embedded whole, "
            f"at {1 / ratio:.0f}x the tiles' ground scale, so expect weak matches; query with an image "
            f"covering about {metres(tiles.median)} m, or index with tiles of about "
            f"{metres(math.sqrt(width * height) * gsd)} m (--tile-metres)",), scales)
    return ImageQuery(window, (), scales)  # within 2x of a tile: its centre at a tile's size, or the whole image


def _other_scales(reader: IndexReader, width: int, height: int, gsd: float,
                  median: float) -> tuple[ScaleWindow, ...]:
    """The image's centre at the ground size of each scale group but the one holding the tiles' median
    size (embedded for its rasters: ImageQuery.window); () for an index of one scale."""
    groups = scale_groups(reader)
    if len(groups) < 2:
        return ()
    own = nearest_group(groups, median)
    whole = (0, 0, width, height)
    return tuple(ScaleWindow(centred_window(width, height, whole, max(float(MIN_QUERY_BOX_PX), group.size / gsd)),
                             group.rasters) for group in groups if group is not own)
