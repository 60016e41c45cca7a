"""Taking a query, the steps box, image and feedback searches share: the index and the model to use, where
a box lies on its raster and its pixels (at each ground scale the index holds: scale-aware search), where
a query lies (to leave out the hits that overlap it), and the index's nearest tiles to a query vector as a
source of candidates for ranking (core/ranking.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import IndexStoreError, ModelError, RasterError, RasterMissingError
from .geometry import Quad, ground_quads
from .model import ModelInfo, find_model, read_model
from .params import SearchParams
from .query_box import MIN_QUERY_BOX_PX, fmt_box, query_window
from .raster import RasterSource, describe, open_dataset, resolve_raster_path
from .scales import ScaleWindow, centred_window, nearest_group, scale_groups
from .store import IndexReader, check_model, shared_reader
from .tiling import pixel_size_metres, read_window

# A source of ranked candidates: given n, the best n (or fewer) tiles as (scores, ids), best first.
# Defined here beside nearest(), its plainest source, so that ranking (which consumes it) depends on
# this module and not the other way round.
Candidates = Callable[[int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class QueryArea:
    """Where the query box lies: its raster and pixel window, and its ground quad (None without a CRS)."""

    raster: str
    window: tuple[int, int, int, int]
    ground: Quad | None


@dataclass(frozen=True, eq=False)
class ScaleQuery:
    """One embedding of a query and the rasters whose tiles are ranked against it (None: every raster no
    other ScaleQuery of the query names). A query of one scale is one ScaleQuery with rasters None."""

    vector: np.ndarray  # (D,) unit vector
    rasters: frozenset[int] | None = None


def index_reader(index_dir: str | Path) -> IndexReader:
    """The index's shared reader; a missing folder or a file in its place is named as such."""
    path = Path(index_dir).expanduser()
    if not path.exists():
        raise IndexStoreError(f"{index_dir}: no such index directory; build an index there first")
    if not path.is_dir():
        raise IndexStoreError(f"{index_dir}: is a file, not an rsir index directory")
    return shared_reader(path)


def query_raster_path(path: str | Path) -> str:
    """The query raster's resolved path; a missing file is 'not found' (not 'gone from disk')."""
    try:
        return resolve_raster_path(path)
    except RasterMissingError as exc:
        raise RasterError(exc.path, "not found (no such file)") from exc


def model_for(reader: IndexReader, params: SearchParams) -> ModelInfo:
    """The model given, else the one the index was built with (found at its path or bundled)."""
    built_with = reader.manifest["model"]
    if params.model_path is not None:
        model = read_model(params.model_path)
    else:
        model = find_model(built_with["sha256"], built_with.get("path"))
        if model is None:
            raise ModelError(f"{reader.index_dir}: the model this index was built with "
                             f"('{built_with['name']}', {built_with.get('path')}) is not found; pass it")
    check_model(reader.manifest, model, reader.index_dir)
    return model


def box_window(reader: IndexReader, model: ModelInfo, raster_path: str | Path, bbox,
               bbox_crs: str | None) -> tuple[RasterSource, tuple[int, int, int, int]]:
    """The raster a box lies on (fed with the bands it was indexed with) and the box's pixel window."""
    resolved = query_raster_path(raster_path)
    source = describe(resolved, _indexed_bands(reader, resolved), model.contract.bands)
    return source, query_window(source, bbox, bbox_crs)


def read_box(source: RasterSource, window: tuple[int, int, int, int], size: int, bbox) -> np.ndarray:
    """A box's pixels as one model input tile (bands, size, size); an error when it holds only nodata."""
    with open_dataset(source.path) as dataset:
        tile, valid = read_window(dataset, source, window, size)
    if valid == 0:
        raise RasterError(source.path, f"the query box {fmt_box(bbox)} holds only nodata")
    return tile


def box_scale_windows(reader: IndexReader, source: RasterSource,
                      window: tuple[int, int, int, int]) -> list[ScaleWindow]:
    """Where to read a box for each ground scale of the index's tiles (core/scales.py), first the box as
    drawn: for the tiles of the box's own scale (its raster's group, else the group nearest the box's ground
    size) and rasters of unknown size. Each other group gets a square of its tiles' ground size around the
    box's centre, so the model sees the ground at the scale those tiles show it. One window (the box) when
    the index holds one scale or the box's raster has no ground size: the search of rsir before scales."""
    drawn = [ScaleWindow(tuple(window))]
    groups = scale_groups(reader)
    if len(groups) < 2 or not source.crs_wkt:
        return drawn
    try:
        pixel = pixel_size_metres(source)
    except RasterError:
        return drawn
    ids = [raster_id for raster_id, entry in reader.rasters.items() if entry.path == source.path]
    own = next((g for g in groups if ids and ids[0] in g.rasters), None)
    if own is None:
        own = nearest_group(groups, (window[2] * window[3]) ** 0.5 * pixel)
    return drawn + [ScaleWindow(centred_window(source.width, source.height, window,
                                               max(float(MIN_QUERY_BOX_PX), group.size / pixel)), group.rasters)
                    for group in groups if group is not own]


def read_boxes(source: RasterSource, windows: list[tuple[int, int, int, int]], size: int, bbox) -> np.ndarray:
    """A box's pixels at each of its windows (box_scale_windows) as model inputs (n, bands, size, size)."""
    return np.stack([read_box(source, window, size, bbox) for window in windows])


def query_areas(raster, windows: list[tuple[int, int, int, int]]) -> list[QueryArea]:
    """Where boxes of one raster lie, for excluding the hits that overlap them (one reprojection call).

    `raster` is a RasterSource or an index's RasterEntry.
    """
    ground = ground_quads(raster.crs_wkt, raster.transform, windows)
    return [QueryArea(raster=raster.path, window=tuple(window), ground=None if ground is None else ground[i])
            for i, window in enumerate(windows)]


def nearest(reader: IndexReader, query: np.ndarray) -> Candidates:
    """The index's tiles by cosine similarity to `query` (FAISS)."""
    return lambda n: reader.search(query, n)


def _indexed_bands(reader: IndexReader, resolved: str) -> tuple[int, ...] | None:
    """Query a raster with the bands it was indexed with, so query and tiles are fed alike."""
    for entry in reader.rasters.values():
        if entry.path == resolved and entry.tiling.get("bands"):
            return tuple(entry.tiling["bands"])
    return None
