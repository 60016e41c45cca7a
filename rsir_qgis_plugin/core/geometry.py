"""Coordinates: reprojecting boxes and rings between CRSs, and overlap of pixel windows."""
from __future__ import annotations

from .errors import RsirError

Ring = list[tuple[float, float]]


def crs_from(value: str):
    """A rasterio CRS from anything a user may type or QGIS may hand over (EPSG:n, WKT, PROJ)."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise RsirError(f"unknown coordinate reference system '{value[:80]}' ({exc})") from exc


def densify(ring: Ring, points_per_edge: int = 8) -> Ring:
    """Add points along each edge so that a reprojected rectangle keeps its true (curved) shape."""
    out = []
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        for i in range(points_per_edge):
            t = i / points_per_edge
            out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    return out


def reproject_ring(ring: Ring, src_wkt: str, dst_wkt: str) -> Ring:
    """A closed polygon ring from one CRS to another (unchanged when they are equal or unknown)."""
    if not src_wkt or not dst_wkt:
        return list(ring)
    src, dst = crs_from(src_wkt), crs_from(dst_wkt)
    if src == dst:
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
