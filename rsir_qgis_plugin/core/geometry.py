"""Coordinates: reprojecting boxes and rings between CRSs, and overlap of windows and ground footprints."""
from __future__ import annotations

import functools
import warnings

import numpy as np

from .errors import RsirError

Ring = list[tuple[float, float]]
Quad = np.ndarray  # (4, 2) corners of a tile as longitude/latitude, in ring order


def crs_from(value: str):
    """A rasterio CRS from anything a user may type or QGIS may hand over (EPSG:n, WKT, PROJ)."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        # rasterio's text ("The WKT could not be parsed. OGR Error code 6") says nothing a user can act
        # on; PROJ's own reason goes to GDAL's error handler, which the command line adds to this line.
        raise RsirError(f"unknown coordinate reference system '{value[:80]}'") from exc


def crs_name(crs_wkt: str) -> str:
    """A short name for a CRS: its authority code (EPSG:3395) when it has one, else its name."""
    if not crs_wkt:
        return "no CRS"
    crs = crs_from(crs_wkt)
    authority = crs.to_authority()
    if authority:
        return ":".join(authority)
    name = ogr_srs(crs.to_wkt()).GetName()  # 'site grid', not the first 60 characters of a WKT
    return f"'{name}'" if name and name != "unknown" else crs.to_string()[:60]


def ogr_srs(crs_wkt: str):
    """An OGR spatial reference in x/y (lon/lat) order, None for no CRS: what GeoPackages are written with,
    and what tells a CRS's name and whether it is local (rasterio's CRS tells neither)."""
    from osgeo import osr

    if not crs_wkt:
        return None
    with warnings.catch_warnings():
        # GDAL >= 3.9 warns on stderr when a process has chosen neither osr.UseExceptions() nor
        # DontUseExceptions(), a line that would break the command line's one-line errors; choosing
        # exceptions would also take GDAL's error messages from the command line's handler.
        warnings.simplefilter("ignore", FutureWarning)
        srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


@functools.lru_cache(maxsize=256)
def reaches_lonlat(crs: str) -> bool:
    """Whether a CRS (WKT, EPSG:n) has a way to longitude/latitude: every CRS but a local (engineering)
    one, such as a site grid or a CAD drawing.

    A local CRS's rasters are indexed without lon/lat and compared only with themselves, as rasters without
    a CRS are. Whether the way works at a given point (a broken projection's does not) is lonlat_points'
    answer. The test reads the CRS's kind rather than asking PROJ for a transformation: that would print
    GDAL errors, and quieting them around osgeo calls crashes GDAL 3.6's bindings under a Python handler.
    """
    return bool(crs) and not ogr_srs(crs_from(crs).to_wkt()).IsLocal()


def lonlat_points(crs: str, xs, ys) -> tuple[np.ndarray, np.ndarray, str]:
    """Points of a CRS that reaches_lonlat() as longitude/latitude, NaN where PROJ cannot place them.

    rasterio fails a whole call for one point outside a projection's domain; then each point is tried
    alone. Also returns PROJ's reason for the first failure ("" when every point was placed).
    """
    from rasterio.warp import transform

    src, dst = crs_from(crs), crs_from("EPSG:4326")
    xs, ys = list(map(float, xs)), list(map(float, ys))
    try:
        lon, lat = transform(src, dst, xs, ys)
        return np.asarray(lon, np.float64), np.asarray(lat, np.float64), ""
    except Exception as exc:  # noqa: BLE001 - CPLE_AppDefinedError: "Reprojection failed, err = 4098" and the like
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    lon, lat = np.full(len(xs), np.nan), np.full(len(ys), np.nan)
    for i, (x, y) in enumerate(zip(xs, ys)):
        try:
            (lon[i],), (lat[i],) = transform(src, dst, [x], [y])
        except Exception:  # noqa: BLE001 - this point is outside the projection's domain: it stays NaN
            continue
    return lon, lat, reason


def densify(ring: Ring, points_per_edge: int = 8) -> Ring:
    """Add points along each edge so that a reprojected rectangle keeps its true (curved) shape."""
    out = []
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        for i in range(points_per_edge):
            t = i / points_per_edge
            out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    return out


def reproject_ring(ring: Ring, src_wkt: str, dst_wkt: str) -> Ring:
    """A closed polygon ring from one CRS to another (unchanged when they are equal or unknown).

    A local CRS has no link to any other CRS: its rings stay in its own coordinates, as those of a
    raster without a CRS do.
    """
    if not src_wkt or not dst_wkt:
        return list(ring)
    src, dst = crs_from(src_wkt), crs_from(dst_wkt)
    if src == dst or not (reaches_lonlat(src_wkt) and reaches_lonlat(dst_wkt)):
        return list(ring)
    from rasterio.warp import transform

    dense = densify(ring)
    xs, ys = transform(src, dst, [p[0] for p in dense], [p[1] for p in dense])
    return list(zip(xs, ys))


def reproject_bounds(bounds: tuple[float, float, float, float], src: str, dst_wkt: str):
    """An axis-aligned box in `src` to the envelope of its (densified) image in `dst_wkt`."""
    if not src or not dst_wkt:
        return bounds
    src_crs, dst_crs = crs_from(src), crs_from(dst_wkt)
    if src_crs == dst_crs:
        return bounds
    if not (reaches_lonlat(src) and reaches_lonlat(dst_wkt)):
        return (float("nan"),) * 4  # no position there: a local CRS links to no other
    from rasterio.warp import transform_bounds

    return transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)


def window_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two pixel windows (col, row, width, height)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def boxes_intersect(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two (xmin, ymin, xmax, ymax) boxes share area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def ground_quads(crs_wkt: str, transform: tuple[float, ...], windows) -> np.ndarray | None:
    """The corners (n, 4, 2) of pixel windows as longitude/latitude, or None for a raster without a CRS
    (or with a local one, which has no way to longitude/latitude).

    Tiles of different rasters are compared here. Over a tile, lon/lat is an affine image of the
    ground to first order, so ratios of areas (IoU, overlap fractions) carry over. Longitudes are
    unwrapped within a quad so a tile across the antimeridian stays one piece; corners that do not
    reproject come back NaN.
    """
    if not reaches_lonlat(crs_wkt):
        return None
    xs, ys = window_corner_xy(transform, windows)
    return corner_quads(crs_wkt, xs, ys)


def window_corner_xy(transform: tuple[float, ...], windows) -> tuple[np.ndarray, np.ndarray]:
    """The corners of pixel windows (col, row, width, height) in the raster's CRS: xs, ys, each (n, 4), in
    the order top-left, top-right, bottom-right, bottom-left (in pixels)."""
    a, b, c, d, e, f = transform[:6]
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    cols = np.stack([win[:, 0], win[:, 0] + win[:, 2], win[:, 0] + win[:, 2], win[:, 0]], axis=1)
    rows = np.stack([win[:, 1], win[:, 1], win[:, 1] + win[:, 3], win[:, 1] + win[:, 3]], axis=1)
    return a * cols + b * rows + c, d * cols + e * rows + f


def corner_quads(crs_wkt: str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray | None:
    """Quads (n, 4, 2) of lon/lat of corners (n, 4) given in a CRS, in one reprojection call however many
    rasters of that CRS they come from (ground_quads' second half); None where the CRS has no way to
    lon/lat."""
    if not reaches_lonlat(crs_wkt):
        return None
    src = crs_from(crs_wkt)
    if src.is_geographic and src.to_epsg() == 4326:
        lon, lat = xs, ys
    else:
        lon, lat, _ = lonlat_points(crs_wkt, xs.ravel(), ys.ravel())
        lon, lat = lon.reshape(xs.shape), lat.reshape(ys.shape)
    lon = _unwrap(lon, lon[:, :1])
    quads = np.stack([lon, lat], axis=2)
    quads[~np.isfinite(quads).all(axis=(1, 2))] = np.nan
    return quads


def ground_overlap(a: Quad, b: Quad) -> tuple[float, float, float]:
    """Areas of two ground quads' intersection and of each (squared degrees); zeros if either is NaN."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0, 0.0, 0.0
    b = b.copy()
    b[:, 0] = _unwrap(b[:, 0], a[0, 0])
    origin = a[0].copy()  # areas of tiles a few metres wide at longitude 121: subtract first, or lose digits
    a, b = _counter_clockwise(a - origin), _counter_clockwise(b - origin)
    area_a, area_b = polygon_area(a), polygon_area(b)
    if (a[:, 0].max() <= b[:, 0].min() or b[:, 0].max() <= a[:, 0].min()
            or a[:, 1].max() <= b[:, 1].min() or b[:, 1].max() <= a[:, 1].min()):
        return 0.0, area_a, area_b
    return abs(polygon_area(clip_convex(a, b))), area_a, area_b


def ground_iou(a: Quad, b: Quad) -> float:
    """Intersection over union of two ground quads (0 where either has no ground position)."""
    inter, area_a, area_b = ground_overlap(a, b)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


OVERLAP_TOLERANCE = 1e-6  # shared area, as a fraction of the smaller quad, below which edges only touch


def ground_overlaps(a: Quad, b: Quad) -> bool:
    """Whether two ground quads share area (touching edges, up to rounding, do not count)."""
    inter, area_a, area_b = ground_overlap(a, b)
    return inter > 0 and inter > OVERLAP_TOLERANCE * min(area_a, area_b)


def polygon_area(points: np.ndarray) -> float:
    """Signed area of a polygon (shoelace formula; positive when counter-clockwise)."""
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """The part of convex polygon `subject` inside convex polygon `clip`, both counter-clockwise.

    Sutherland-Hodgman: cut the subject by each edge of the clip polygon in turn.
    """
    output = [tuple(p) for p in subject]
    for (x0, y0), (x1, y1) in zip(clip, np.roll(clip, -1, axis=0)):
        if not output:
            break
        # side > 0: left of the edge, that is inside a counter-clockwise polygon
        sides = [(x1 - x0) * (p[1] - y0) - (y1 - y0) * (p[0] - x0) for p in output]
        points, output = output, []
        for i, p in enumerate(points):
            q, sp, sq = points[(i + 1) % len(points)], sides[i], sides[(i + 1) % len(points)]
            if sp >= 0:
                output.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                output.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return np.asarray(output, dtype=np.float64).reshape(-1, 2)


def _counter_clockwise(points: np.ndarray) -> np.ndarray:
    return points if polygon_area(points) >= 0 else points[::-1]


def _unwrap(lon: np.ndarray, reference) -> np.ndarray:
    """Longitudes shifted by whole turns to lie within 180 degrees of `reference`."""
    return reference + (lon - reference + 180.0) % 360.0 - 180.0
