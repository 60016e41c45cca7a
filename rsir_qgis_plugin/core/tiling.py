"""Cutting a raster into tiles and reading each one resampled to the model's input size."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import RasterError
from .params import MIN_TILE_PX, TilingParams
from .raster import RasterSource, first_line, to_uint8

EMPTY_TILE_STD = 1.0  # a tile flatter than this (uint8 scale) in every band holds nothing to find
COLLAR_LEVEL = 2  # pixels this dark in every band count as padding in rasters that declare no nodata

Window = tuple[int, int, int, int]  # col_off, row_off, width, height in source pixels


@dataclass(frozen=True)
class Grid:
    """Tile size and stride in source pixels for one raster."""

    tile_px: int
    stride_px: int


def pixel_size_metres(source: RasterSource) -> float:
    """Ground size of one pixel (mean of x and y), in metres, for projected or geographic CRSs."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    a, b, _, d, e, _ = source.transform
    size_x, size_y = math.hypot(a, d), math.hypot(b, e)
    if not source.crs_wkt:
        raise RasterError(source.path, "has no CRS, so a tile size in metres has no meaning; give it in pixels")
    try:
        crs = CRS.from_wkt(source.crs_wkt)
        if crs.is_geographic:
            # Degrees to metres at the raster's centre latitude (spherical Earth is plenty for tile sizes).
            lat = source.transform[5] + source.transform[4] * source.height / 2
            metres_per_degree = 111_320.0
            return (size_x * metres_per_degree * math.cos(math.radians(lat)) + size_y * metres_per_degree) / 2
        return (size_x + size_y) / 2 * crs.linear_units_factor[1]
    except CRSError as exc:  # an engineering/local CRS, or units PROJ cannot convert
        raise RasterError(source.path, f"its CRS has no known size in metres ({exc}); give the tile size "
                                       "in pixels") from exc


def resolve_grid(source: RasterSource, tiling: TilingParams, default_tile: int) -> Grid:
    """Tile size and stride in pixels from the settings (pixels, metres, or else `default_tile`: the
    model's tile size, ModelContract.tile_px)."""
    metres = pixel_size_metres(source) if (tiling.tile_m or tiling.stride_m) else None
    if tiling.tile_px is not None:
        tile = tiling.tile_px
    elif tiling.tile_m is not None:
        tile = round(tiling.tile_m / metres)
    else:
        tile = default_tile
    if tile < MIN_TILE_PX:
        raise RasterError(source.path, _too_small(tile, tiling, metres))
    if tiling.stride_px is not None:
        stride = tiling.stride_px
    elif tiling.stride_m is not None:
        stride = max(1, round(tiling.stride_m / metres))
    else:
        stride = max(1, tile // 2)
    return Grid(tile_px=tile, stride_px=stride)


def _too_small(tile: int, tiling: TilingParams, metres: float | None) -> str:
    """Why a tile size is refused, with the raster's pixel size and the smallest sensible tile."""
    if tiling.tile_m is None:
        return f"tiles of {tile} px are too small to describe a place; tiles need at least {MIN_TILE_PX} px"
    smallest = MIN_TILE_PX * metres
    shown = f"{math.ceil(smallest)}" if smallest >= 100 else f"{smallest:.3g}"
    return (f"a {tiling.tile_m:g} m tile is {tiling.tile_m / metres:.2g} px of its {metres:.3g} m pixels; "
            f"tiles need at least {MIN_TILE_PX} px, so the smallest sensible tile here is {shown} m")


def axis_offsets(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis; the last tile is pulled back to end at the edge so none hangs over."""
    if length <= tile:
        return [0]
    offsets = list(range(0, length - tile + 1, stride))
    if offsets[-1] != length - tile:
        offsets.append(length - tile)
    return offsets


class WindowPlan(Sequence):
    """Every tile window of a raster, row by row, computed on demand from the two axes' offsets.

    A 100,000 px square raster at 32 px tiles and 16 px stride has 39 million windows: as a list of
    tuples they took 5.3 GB before a single tile was read. A plan holds the offsets (two lists of a
    few thousand ints) and a range; slicing (a resumed build's `windows[start:]`) gives another plan,
    and iterating yields one window at a time. It pickles small, for Dask workers.
    """

    def __init__(self, cols: list[int], rows: list[int], tile_w: int, tile_h: int, start: int = 0,
                 stop: int | None = None):
        self.cols, self.rows, self.tile_w, self.tile_h = cols, rows, tile_w, tile_h
        total = len(cols) * len(rows)
        self.start, self.stop = start, total if stop is None else stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def _window(self, index: int) -> Window:
        row, col = divmod(index, len(self.cols))
        return self.cols[col], self.rows[row], self.tile_w, self.tile_h

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return WindowPlan(self.cols, self.rows, self.tile_w, self.tile_h, self.start + start,
                              self.start + max(start, stop))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("window index out of range")
        return self._window(self.start + index)

    def __iter__(self) -> Iterator[Window]:
        n_cols = len(self.cols)
        if not len(self):
            return
        first_row, first_col = divmod(self.start, n_cols)
        remaining = len(self)
        for row in self.rows[first_row:]:
            for col in self.cols[first_col:]:
                yield col, row, self.tile_w, self.tile_h
                remaining -= 1
                if not remaining:
                    return
            first_col = 0

    def __eq__(self, other) -> bool:
        if isinstance(other, (Sequence, WindowPlan)) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == tuple(b) for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"WindowPlan({len(self)} windows of {self.tile_w} x {self.tile_h} px)"


def tile_windows(width: int, height: int, grid: Grid) -> WindowPlan:
    """Every tile window of a raster, row by row (lazily: see WindowPlan)."""
    tile_w, tile_h = min(grid.tile_px, width), min(grid.tile_px, height)
    return WindowPlan(axis_offsets(width, grid.tile_px, grid.stride_px),
                      axis_offsets(height, grid.tile_px, grid.stride_px), tile_w, tile_h)


def window_bounds(transform: tuple[float, ...], window: Window) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a pixel window in the raster's CRS (envelope of its corners)."""
    xs, ys = window_corners(transform, window)
    return min(xs), min(ys), max(xs), max(ys)


def window_corners(transform: tuple[float, ...], window: Window) -> tuple[list[float], list[float]]:
    """The four corners of a window (clockwise from top-left) in the raster's CRS."""
    a, b, c, d, e, f = transform[:6]
    col, row, w, h = window
    pixels = [(col, row), (col + w, row), (col + w, row + h), (col, row + h)]
    return [a * x + b * y + c for x, y in pixels], [d * x + e * y + f for x, y in pixels]


def read_window(dataset, source: RasterSource, window: Window, size: int,
                no_nodata: bool | None = None) -> tuple[np.ndarray, float]:
    """One tile as uint8 (bands, size, size) and its valid (not nodata) fraction.

    Reading with out_shape lets GDAL use overviews when the tile is downsampled, never one with fewer
    pixels across the window than `size` (finer_overview_read). A raster that declares no nodata (no
    value, mask or alpha) has no mask to read: GDAL would compute one of 255s at full resolution, which
    cost more than the pixels on a COG. `no_nodata`: _declares_no_nodata(dataset), when the caller knows it.
    """
    from rasterio.enums import Resampling
    from rasterio.windows import Window as RioWindow

    rio_window = RioWindow(*window)
    unique = sorted(set(source.bands))
    try:
        if no_nodata is None:
            no_nodata = _declares_no_nodata(dataset)
        if finer_overview_read(dataset, window, size, unique[0]):
            pixels = _halved(dataset.read(unique, window=rio_window, out_shape=(len(unique), 2 * size, 2 * size),
                                          resampling=Resampling.bilinear))
        else:
            pixels = dataset.read(unique, window=rio_window, out_shape=(len(unique), size, size),
                                  resampling=Resampling.bilinear)
        mask = None if no_nodata else dataset.dataset_mask(window=rio_window, out_shape=(size, size),
                                                           resampling=Resampling.nearest)
    except Exception as exc:  # GDAL surfaces decoding errors of damaged or missing blocks here
        raise RasterError(source.path, f"pixels in window {window} cannot be read ({first_line(exc)})") from exc
    tile, valid = _to_uint8_and_valid(pixels, mask, unique, source)
    return tile, float(valid.mean())


# GDAL serves a downsampled read from the coarsest overview whose pixels are at most this much larger than
# asked for (GDAL 3.6's GDALBandGetBestOverviewLevel2; later versions may use 1.0 with bilinear).
GDAL_OVERVIEW_OVERSAMPLING = 1.2


def finer_overview_read(dataset, window: Window, size: int, band: int = 1) -> bool:
    """Whether GDAL may serve `window` read at `size` px from an overview with fewer than `size` pixels
    across it (a 560 px window at 160 px on a raster with 2x and 4x overviews: the 4x level's 140 px,
    stretched). Such a window is read at twice the size and halved (_halved): GDAL then picks a level at
    most 0.6x the window's downsampling, one with at least 1.67 `size` pixels across the window."""
    factor = min(window[2], window[3]) / size
    if factor <= 1.0:
        return False
    return any(factor < level <= factor * GDAL_OVERVIEW_OVERSAMPLING for level in dataset.overviews(band))


def _halved(pixels: np.ndarray) -> np.ndarray:
    """(bands, 2S, 2S) -> (bands, S, S), the mean of each 2 x 2 block, in the pixels' own type."""
    bands, height, width = pixels.shape
    blocks = pixels.reshape(bands, height // 2, 2, width // 2, 2).mean(axis=(2, 4))
    if np.issubdtype(pixels.dtype, np.integer):
        blocks = np.rint(blocks)
    return blocks.astype(pixels.dtype)


def _to_uint8_and_valid(pixels: np.ndarray, mask: np.ndarray | None, unique: list[int],
                        source: RasterSource) -> tuple[np.ndarray, np.ndarray]:
    """Pixels read for the `unique` bands -> uint8 in the source's band order, and the valid-pixel mask."""
    if unique != list(source.bands):
        pixels = pixels[[unique.index(b) for b in source.bands]]
    if mask is None:
        tile = to_uint8(pixels, source.stretch)
        # Orthophotos without a nodata value or mask often pad with a black collar: treat it as nodata.
        valid = tile.max(axis=0) > COLLAR_LEVEL
    else:
        valid = mask > 0
        if source.stretch is not None:
            pixels = np.where(valid[None], pixels, 0)  # nodata values must not reach the stretch
        tile = to_uint8(pixels, source.stretch)
    return tile, valid


def _declares_no_nodata(dataset) -> bool:
    from rasterio.enums import MaskFlags

    return all(MaskFlags.all_valid in flags for flags in dataset.mask_flag_enums)


def is_empty(tile: np.ndarray) -> bool:
    """A tile flat in every band (blank padding, a uniform fill) is not worth indexing: its standard
    deviation is below EMPTY_TILE_STD in every band (uint8 scale)."""
    flat = tile.reshape(tile.shape[0], -1)
    squares = flat.astype(np.uint16)
    squares *= squares  # 255 ** 2 fits in uint16
    sums, sums_of_squares = flat.sum(axis=1, dtype=np.int64), squares.sum(axis=1, dtype=np.int64)
    return bool(_flat(sums, sums_of_squares, flat.shape[1]).all())


def _flat(sums: np.ndarray, sums_of_squares: np.ndarray, n: int) -> np.ndarray:
    """Per band (axis 0): standard deviation below EMPTY_TILE_STD, from exact integer sums of n pixels.

    n * variance * n = n * sum(x^2) - sum(x)^2 is an exact integer, so the test has no rounding."""
    return n * sums_of_squares - sums * sums < (EMPTY_TILE_STD ** 2) * n * n


def read_tiles(dataset, source: RasterSource, windows: list[Window], size: int,
               min_valid_fraction: float) -> Iterator[tuple[Window, np.ndarray | None]]:
    """Each window with its tile, or None where the tile is mostly nodata or empty (skipped).

    Consecutive windows of one tile row that need no resampling (size x size source pixels, the default
    grid) are read as one strip: one GDAL read per row instead of one per tile (and per mask), the
    mask only where the raster declares nodata, and the nodata and emptiness checks of the whole strip
    at once. The tiles are the same as read_window's; other windows are read one by one with it.
    """
    no_nodata = None
    for strip in _strips(windows, size):
        if no_nodata is None:
            no_nodata = _declares_no_nodata(dataset)
        if len(strip) == 1 or strip[0][2] != size:
            for window in strip:
                tile, valid_fraction = read_window(dataset, source, window, size, no_nodata)
                keep = valid_fraction >= min_valid_fraction and valid_fraction > 0 and not is_empty(tile)
                yield window, (tile if keep else None)
            continue
        yield from _read_strip(dataset, source, strip, size, min_valid_fraction, no_nodata)


STRIP_MAX_PX = 8192  # widest strip read at once (its pixels are held in memory: size x width x bands)


def _strips(windows: list[Window], size: int) -> Iterator[list[Window]]:
    """Runs of consecutive size x size windows on one row, left to right, at most STRIP_MAX_PX wide;
    every other window alone."""
    strip: list[Window] = []
    for window in windows:
        col, row, width, height = window
        fits = width == height == size
        follows = bool(strip) and row == strip[-1][1] and col > strip[-1][0]
        if fits and follows and col + size - strip[0][0] <= STRIP_MAX_PX:
            strip.append(window)
            continue
        if strip:
            yield strip
        strip = [window] if fits else []
        if not fits:
            yield [window]
    if strip:
        yield strip


def _read_strip(dataset, source: RasterSource, strip: list[Window], size: int, min_valid_fraction: float,
                no_nodata: bool) -> Iterator[tuple[Window, np.ndarray | None]]:
    from rasterio.windows import Window as RioWindow

    first, row = strip[0][0], strip[0][1]
    span = (first, row, strip[-1][0] + size - first, size)
    rio_window = RioWindow(*span)
    unique = sorted(set(source.bands))
    try:
        pixels = dataset.read(unique, window=rio_window)
        mask = None if no_nodata else dataset.dataset_mask(window=rio_window)
    except Exception as exc:  # GDAL surfaces decoding errors of damaged or missing blocks here
        raise RasterError(source.path, f"pixels in window {span} cannot be read ({first_line(exc)})") from exc
    strip_pixels, valid = _to_uint8_and_valid(pixels, mask, unique, source)
    offsets = np.array([window[0] - first for window in strip])
    valid_counts = _window_sums(valid.sum(axis=0, dtype=np.int64), offsets, size)
    squares = strip_pixels.astype(np.uint16)
    squares *= squares  # 255 ** 2 fits in uint16
    sums = _window_sums(strip_pixels.sum(axis=1, dtype=np.int64), offsets, size)
    sums_of_squares = _window_sums(squares.sum(axis=1, dtype=np.int64), offsets, size)
    n = size * size
    empty = _flat(sums, sums_of_squares, n).all(axis=0)
    for i, window in enumerate(strip):
        valid_fraction = float(valid_counts[i]) / n
        keep = valid_fraction >= min_valid_fraction and valid_fraction > 0 and not empty[i]
        offset = offsets[i]
        yield window, (strip_pixels[:, :, offset:offset + size] if keep else None)


def _window_sums(column_sums: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """Sums over columns [offset, offset + size) of per-column sums (..., width), for each offset."""
    cumulative = np.concatenate([np.zeros((*column_sums.shape[:-1], 1), np.int64),
                                 np.cumsum(column_sums, axis=-1)], axis=-1)
    return cumulative[..., offsets + size] - cumulative[..., offsets]
