"""Mapping every match of a feedback search: the index's tiles scored, thresholded and dissolved into polygons.

A map is what an analyst makes of a search ("every solar farm in the county"): every live tile of the
index is scored by the feedback search's classifier (core/feedback.py: the probability `rsir search`
reports; the cosine with the Rocchio query when there are fewer than two examples of either label),
segment by segment and a batch of vectors at a time, so memory holds a few numbers a tile and never all
vectors. The tiles scoring at least the threshold are dissolved raster by raster in the raster's own
pixel grid: their windows cut the grid into cells, covered cells that share an edge are one polygon
(GDAL's polygonizer, 4-connected, holes kept; tiles touching only at a corner stay apart), and the
polygon's corners go through the raster's affine transform, so the outline is exact in its CRS.
The scores of the last scoring are kept (TileScores), so another threshold is only arithmetic.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import RsirError, SearchCancelled
from .examples import Feedback
from .geometry import Ring, crs_from
from .params import SearchParams
from .query_step import index_reader
from .store import RasterEntry

EARTH_RADIUS_M = 6_378_137.0  # for areas of rasters in degrees: a sphere, to 0.5 % of the ellipsoid's area
MAX_CELLS = 200_000_000  # cells of one raster's dissolve grid (a regular tiling of 10^6 tiles needs ~4x that)


@dataclass(frozen=True)
class MapParams:
    """How a map is made: the threshold on the score, and how the feedback examples are embedded."""

    threshold: float = 0.5  # tiles scoring >= threshold are matches
    device: str = "auto"
    tta: bool = False
    batch: int = 65536  # vectors scored at once (memory: batch x D x 4 bytes)

    def __post_init__(self):
        if not (math.isfinite(self.threshold) and -1.0 <= self.threshold <= 1.0):
            raise ValueError(f"the threshold must be a number from -1 to 1 (a probability: 0-1), got {self.threshold}")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")


@dataclass(frozen=True)
class MappedPolygon:
    """One polygon of a map: touching or overlapping matched tiles of one raster, dissolved."""

    map_id: int  # 1-based, in the map's order (rasters by path, then polygons by position)
    raster: str  # the raster's path
    rings: tuple[Ring, ...]  # the exterior ring, then any holes, in crs_wkt (first point not repeated)
    crs_wkt: str  # the rings' CRS: the raster's when mapped, the file's layer CRS when read back
    score_mean: float  # mean score of its tiles
    score_max: float
    tiles: int  # matched tiles merged into it
    area_m2: float  # its area on the ground, square metres


@dataclass(frozen=True)
class MatchMap:
    """A map of matches and how it was made (recorded in the map file, core/map_io.py)."""

    polygons: tuple[MappedPolygon, ...]
    threshold: float  # tiles scoring >= threshold are matches
    labels: str  # the labels file of the feedback search
    index: str  # the index folder
    model: str  # the index's model: name and sha256
    scoring: str = "probability"  # what a score is: the classifier's "probability", or "cosine" (Rocchio)
    tiles_scored: int = 0  # live tiles of the index scored

    @property
    def tiles(self) -> int:
        return sum(polygon.tiles for polygon in self.polygons)

    @property
    def area_m2(self) -> float:
        return sum(polygon.area_m2 for polygon in self.polygons)

    def describe(self) -> str:
        """One line for the user: polygons, tiles and area."""
        return (f"{len(self.polygons)} polygon(s) of {self.tiles} matched tile(s) (of {self.tiles_scored} scored, "
                f"{self.scoring} >= {self.threshold:g}), {area_text(self.area_m2)}")


def area_text(area_m2: float) -> str:
    """An area for people: m² below a tenth of a km², else km²."""
    return f"{area_m2:,.0f} m²" if area_m2 < 1e5 else f"{area_m2 / 1e6:,.3f} km²"


@dataclass(frozen=True)
class MapSummary:
    """What a threshold would map, without outlines: the dock's preview."""

    polygons: int
    tiles: int
    area_m2: float


@dataclass(frozen=True, eq=False)
class TileScores:
    """Every live tile's score and place, from one scoring: any threshold maps from these without the index."""

    scores: np.ndarray  # (n,) float32
    rasters: np.ndarray  # (n,) int64 raster ids
    windows: np.ndarray  # (n, 4) int64 pixel windows col, row, width, height
    places: dict[int, RasterEntry]  # raster id -> its entry (path, CRS, transform)
    scoring: str  # "probability" or "cosine"
    labels: str
    index: str
    model: str
    seconds: float = 0.0

    def count_at(self, threshold: float) -> int:
        """Tiles scoring >= threshold."""
        return int(np.count_nonzero(self.scores >= threshold))


def map_matches(index_dir: str | Path, labels_path: str | Path, params: MapParams,
                progress: Callable[[float, str], None] | None = None,
                is_cancelled: Callable[[], bool] | None = None) -> MatchMap:
    """The map of every tile of the index that the labels' feedback search scores >= params.threshold."""
    from .labels_io import read_labels

    feedback = read_labels(labels_path)
    scores = score_tiles(index_dir, feedback, params, str(Path(labels_path).resolve()), progress, is_cancelled)
    return dissolve(scores, params.threshold)


def score_tiles(index_dir: str | Path, feedback: Feedback, params: MapParams, labels: str = "",
                progress: Callable[[float, str], None] | None = None,
                is_cancelled: Callable[[], bool] | None = None) -> TileScores:
    """Score every live tile of the index by the feedback search's scorer, a batch of vectors at a time.

    progress(percent, message); SearchCancelled when is_cancelled() turns true. Labelled tiles are
    scored like any other (a map shows the positives too).
    """
    from .feedback import example_scores, search_feedback

    started = time.perf_counter()
    search = search_feedback(index_dir, feedback, SearchParams(k=1, tta=params.tta, device=params.device,
                                                               exclude_query_overlap=False), is_cancelled)
    scorer = search.scorer
    # The reader the search used (the shared one: no second copy of the index in memory, and the same
    # generation), read through its public, locked calls: the plugin may search from other threads meanwhile.
    reader = index_reader(index_dir)
    model = reader.manifest["model"]
    n = reader.size
    scores = np.zeros(n, np.float32)
    rasters = np.zeros(n, np.int64)
    windows = np.zeros((n, 4), np.int64)
    done = 0
    for tiles, vectors in reader.iter_tiles(params.batch):  # segment by segment, a batch at a time
        if is_cancelled and is_cancelled():
            raise SearchCancelled("mapping cancelled")
        end = done + len(tiles)
        scores[done:end] = example_scores(vectors, scorer.query, scorer.weights, scorer.bias)
        rasters[done:end] = [tile.raster.id for tile in tiles]
        windows[done:end] = [tile.window for tile in tiles]
        done = end
        if progress:
            progress(100.0 * done / max(n, 1), f"scored {done:,} of {n:,} tiles")
    places = dict(reader.rasters)
    return TileScores(scores=scores[:done], rasters=rasters[:done], windows=windows[:done], places=places,
                      scoring=search.scoring, labels=labels, index=str(index_dir),
                      model=f"{model['name']} (sha256 {model['sha256'][:12]})",
                      seconds=time.perf_counter() - started)


def dissolve(tile_scores: TileScores, threshold: float) -> MatchMap:
    """The map at a threshold: the matched tiles of each raster (by path) merged into polygons."""
    polygons: list[MappedPolygon] = []
    for raster_id, rows in _matched_by_raster(tile_scores, threshold):
        entry = tile_scores.places[raster_id]
        for rings, members, area in _raster_polygons(entry, tile_scores.windows[rows], outlines=True):
            scores = tile_scores.scores[rows[members]].astype(np.float64)
            polygons.append(MappedPolygon(map_id=len(polygons) + 1, raster=entry.path, rings=rings,
                                          crs_wkt=entry.crs_wkt, score_mean=float(scores.mean()),
                                          score_max=float(scores.max()), tiles=len(members), area_m2=area))
    return MatchMap(polygons=tuple(polygons), threshold=float(threshold), labels=tile_scores.labels,
                    index=tile_scores.index, model=tile_scores.model, scoring=tile_scores.scoring,
                    tiles_scored=len(tile_scores.scores))


def summarise(tile_scores: TileScores, threshold: float) -> MapSummary:
    """How many polygons, tiles and square metres dissolve() would give, without making outlines."""
    polygons, tiles, area = 0, 0, 0.0
    for raster_id, rows in _matched_by_raster(tile_scores, threshold):
        found = _raster_polygons(tile_scores.places[raster_id], tile_scores.windows[rows], outlines=False)
        polygons += len(found)
        tiles += len(rows)
        area += sum(item[2] for item in found)
    return MapSummary(polygons=polygons, tiles=tiles, area_m2=area)


def _matched_by_raster(tile_scores: TileScores, threshold: float):
    """(raster id, rows of its tiles scoring >= threshold) for each raster with any, by raster path."""
    rows = np.flatnonzero(tile_scores.scores >= threshold)
    order = np.argsort(tile_scores.rasters[rows], kind="stable")
    rows = rows[order]
    ids, starts = np.unique(tile_scores.rasters[rows], return_index=True)
    groups = np.split(rows, starts[1:])
    return sorted(((int(i), g) for i, g in zip(ids, groups)), key=lambda item: tile_scores.places[item[0]].path)


def _raster_polygons(entry: RasterEntry, windows: np.ndarray, outlines: bool):
    """[(rings in the raster's CRS or (), member rows of `windows`, area m²)] of one raster's tiles.

    The windows' edges cut the pixel grid into cells (coordinate compression); a cell is covered when a
    window holds it; GDAL polygonizes the covered cells 4-connected and burns each polygon's number back
    into the grid, and a tile belongs to the polygon of its first cell.
    """
    xs, cols = np.unique(np.concatenate([windows[:, 0], windows[:, 0] + windows[:, 2]]), return_inverse=True)
    ys, rows = np.unique(np.concatenate([windows[:, 1], windows[:, 1] + windows[:, 3]]), return_inverse=True)
    n = len(windows)
    x0, x1, y0, y1 = cols[:n], cols[n:], rows[:n], rows[n:]
    nx, ny = len(xs) - 1, len(ys) - 1
    if nx * ny > MAX_CELLS:
        raise RsirError(f"{entry.path}: its matched tiles cut its grid into {nx * ny:,} cells, more than "
                        f"{MAX_CELLS:,} (tiles of irregular sizes?); raise the threshold")
    # Coverage by a 2-D difference array: +1/-1 at each window's corners, summed along both axes.
    cover = np.zeros((ny + 1, nx + 1), np.int32)
    np.add.at(cover, (y0, x0), 1)
    np.add.at(cover, (y0, x1), -1)
    np.add.at(cover, (y1, x0), -1)
    np.add.at(cover, (y1, x1), 1)
    mask = (cover.cumsum(axis=0).cumsum(axis=1)[:ny, :nx] > 0).astype(np.uint8)
    labels, rings, ring_counts = _polygonize(mask, outlines)
    member = labels[y0, x0]  # each tile's polygon number, 1..count
    count = len(ring_counts)
    cell_area = np.outer(np.diff(ys), np.diff(xs)).astype(np.float64)  # pixels²
    metres = _cell_metres(entry, xs, ys, cell_area)
    areas = np.bincount(labels.ravel(), weights=metres.ravel(), minlength=count + 1)
    order = np.argsort(member, kind="stable")
    groups = np.split(order, np.searchsorted(member[order], np.arange(2, count + 1)))
    ground = _rings_on_ground(rings, xs, ys, entry.transform) if outlines else []
    ends = np.cumsum(ring_counts).tolist()
    return [(tuple(ground[end - rings_of:end]), members, float(areas[number]))
            for number, (members, rings_of, end) in enumerate(zip(groups, ring_counts, ends), start=1)]


def _polygonize(mask: np.ndarray, outlines: bool):
    """(labels (ny, nx) int32: 0 uncovered, else the polygon's number; the rings of every polygon in grid
    coordinates, polygon after polygon (with `outlines`, else none); each polygon's count of rings) of the
    covered cells of a 0/1 mask, cells sharing an edge joined."""
    from osgeo import gdal, ogr

    ny, nx = mask.shape
    raster = gdal.GetDriverByName("MEM").Create("", nx, ny, 1, gdal.GDT_Byte)
    band = raster.GetRasterBand(1)
    band.WriteArray(mask)
    source = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = source.CreateLayer("cells", None, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("number", ogr.OFTInteger))
    gdal.Polygonize(band, band, layer, 0, [], callback=None)  # the mask band: covered cells only
    rings, ring_counts = [], []
    layer.ResetReading()
    for number, feature in enumerate(layer, start=1):
        feature.SetField(0, number)
        layer.SetFeature(feature)
        geometry = feature.GetGeometryRef()
        ring_counts.append(geometry.GetGeometryCount())
        if outlines:
            rings += [geometry.GetGeometryRef(i).GetPoints() for i in range(ring_counts[-1])]
    labels = gdal.GetDriverByName("MEM").Create("", nx, ny, 1, gdal.GDT_Int32)
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # "no spatial reference": grid and layer have none, alike
    try:
        gdal.RasterizeLayer(labels, [1], layer, options=["ATTRIBUTE=number"])
    finally:
        gdal.PopErrorHandler()
    return labels.GetRasterBand(1).ReadAsArray(), rings, ring_counts


def _rings_on_ground(rings: list[list[tuple]], xs: np.ndarray, ys: np.ndarray,
                     transform: tuple[float, ...]) -> list[Ring]:
    """Closed rings of grid corners to the raster's CRS: grid index -> pixel edge -> affine transform;
    collinear points and the closing point dropped. One pass of numpy for all of a raster's rings."""
    a, b, c, d, e, f = transform[:6]
    lengths = np.array([len(ring) - 1 for ring in rings])  # without the closing point
    points = np.rint(np.array([p[:2] for ring in rings for p in ring[:-1]], dtype=np.float64)).astype(np.int64)
    firsts = np.cumsum(lengths) - lengths
    starts = np.repeat(firsts, lengths)
    at = np.arange(len(points)) - starts  # position within its ring
    ring_length = np.repeat(lengths, lengths)
    before = points - points[starts + (at - 1) % ring_length]
    after = points[starts + (at + 1) % ring_length] - points
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0] != 0
    col, row = xs[points[:, 0]].astype(np.float64), ys[points[:, 1]].astype(np.float64)
    x, y = (a * col + b * row + c)[turn].tolist(), (d * col + e * row + f)[turn].tolist()
    ends = np.cumsum(np.add.reduceat(turn, firsts)).tolist() if len(rings) else []
    return [list(zip(x[start:end], y[start:end])) for start, end in zip([0, *ends[:-1]], ends)]


def _cell_metres(entry: RasterEntry, xs: np.ndarray, ys: np.ndarray, cell_pixels: np.ndarray) -> np.ndarray:
    """Each grid cell's ground area in m² (0 for a raster without a CRS or of unknown units)."""
    a, b, c, d, e, f = entry.transform[:6]
    pixel = abs(a * e - b * d)  # CRS units² a pixel
    if not entry.crs_wkt:
        return np.zeros_like(cell_pixels)
    from rasterio.errors import CRSError

    try:
        crs = crs_from(entry.crs_wkt)
        if not crs.is_geographic:
            return cell_pixels * pixel * crs.linear_units_factor[1] ** 2
    except (RsirError, CRSError):  # a local CRS or units PROJ cannot convert: no area in metres
        return np.zeros_like(cell_pixels)
    # Degrees: a degree² is R² (pi/180)² cos(latitude) m², the latitude taken at each cell's centre.
    col = (xs[:-1] + xs[1:])[None, :] / 2
    row = (ys[:-1] + ys[1:])[:, None] / 2
    latitude = d * col + e * row + f
    return cell_pixels * pixel * (EARTH_RADIUS_M * math.pi / 180) ** 2 * np.cos(np.radians(latitude))
