"""Query boxes on the command line: a labelled box as RASTER:XMIN,YMIN,XMAX,YMAX, and whether --crs can
place a box on a raster at all."""
from __future__ import annotations

from pathlib import Path

from .cli_numbers import coordinate_problem
from .core.errors import RsirError


def labelled_box(option: str, text: str) -> tuple[str, tuple[float, ...]]:
    """RASTER:XMIN,YMIN,XMAX,YMAX (the raster path may hold ':', as C:\\ does) as (raster, box)."""
    raster, colon, numbers = text.rpartition(":")
    form = "RASTER:XMIN,YMIN,XMAX,YMAX"
    if not colon:
        raise RsirError(f"{option} '{text}': expected {form}")
    if not raster.strip():
        raise RsirError(f"{option} '{text}': no raster before the ':' (expected {form})")
    values = [v.strip() for v in numbers.split(",")]
    if len(values) != 4:
        raise RsirError(f"{option} '{text}': expected 4 numbers XMIN,YMIN,XMAX,YMAX after the raster, "
                        f"got {len(values)}")
    try:
        numbers = tuple(float(v) for v in values)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise RsirError(f"{option} '{text}': '{bad}' is not a number (expected {form})") from None
    problem = next(filter(None, map(coordinate_problem, numbers)), None)
    if problem:
        raise RsirError(f"{option} '{text[:120]}': {problem}")
    return raster, numbers


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def require_crs(raster: Path, crs: str) -> None:
    """--crs on a raster without a CRS, or with a local one (a site grid, which no other CRS converts to),
    cannot place the box: say so rather than ignore it."""
    from .core.geometry import crs_from, crs_name, reaches_lonlat
    from .core.raster import open_dataset

    try:
        with open_dataset(raster) as dataset:
            crs_wkt = dataset.crs.to_wkt() if dataset.crs else ""
    except RsirError:
        return  # the search names what is wrong with the file
    if not crs_wkt:
        raise RsirError(f"{raster}: has no CRS, so a box in {crs} cannot be placed on it; give --bbox in "
                        "the raster's own coordinates and leave out --crs")
    if not reaches_lonlat(crs_wkt) and crs_from(crs) != crs_from(crs_wkt):
        raise RsirError(f"{raster}: has a local CRS ({crs_name(crs_wkt)}) that no other CRS converts to, "
                        f"so a box in {crs} cannot be placed on it; give --bbox in the raster's own "
                        "coordinates and leave out --crs")
