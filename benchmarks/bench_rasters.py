"""The two GeoTIFF layouts analysts meet, written from one real raster with rasterio for the benchmarks.

- COG: 512 x 512 tiles, JPEG (YCbCr), internal overviews (GDAL's COG driver);
- striped: a plain GeoTIFF of 16-row strips, JPEG, no overviews (the layout of many orthophoto exports,
  and of the OpenAerialMap sample itself).
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "rasters" / "oam_5b90f92da0d7280005fab355_4310.tif"
FALLBACK = ROOT / "samples" / "oam_river_bridge.tif"  # the same image, shipped with the project


def source_raster() -> Path:
    return SOURCE if SOURCE.is_file() else FALLBACK


def make_cog(source: Path, out: Path) -> Path:
    import rasterio.shutil

    rasterio.shutil.copy(str(source), str(out), driver="COG", compress="JPEG", blocksize=512,
                         overviews="AUTO", quality=90)
    return out


def make_striped(source: Path, out: Path) -> Path:
    import rasterio

    with rasterio.open(source) as src:
        profile = src.profile.copy()
        profile.update(driver="GTiff", tiled=False, blockysize=16, compress="JPEG", photometric="YCBCR",
                       jpeg_quality=90, interleave="pixel")
        profile.pop("blockxsize", None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read())
    return out


def describe_layout(path: Path) -> str:
    import rasterio

    with rasterio.open(path) as ds:
        block = ds.block_shapes[0]
        kind = f"tiles {block[1]}x{block[0]}" if ds.profile.get("tiled") else f"strips of {block[0]} rows"
        overviews = ds.overviews(1)
        return (f"{path.name}: {ds.width}x{ds.height}x{ds.count} {ds.dtypes[0]}, {kind}, "
                f"{ds.profile.get('compress')}, overviews {overviews or 'none'}")
