"""Shared fixtures: a tiny real ONNX model (tests/data/tiny_model.onnx), GeoTIFFs cut from real imagery."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
TOWN_RASTER = DATA / "oam_town_1024.tif"  # real 0.1 m aerial imagery, see tests/data/README.md
TINY_MODEL = DATA / "tiny_model.onnx"  # made by tests/data/make_tiny_model.py
DEFAULT_MODEL = Path(__file__).parent.parent / "rsir_qgis_plugin" / "models" / "default.onnx"


@pytest.fixture(autouse=True, scope="module")
def released_shared_caches():
    """After each test module, the engine's shared onnxruntime sessions and open index readers are released
    (core.cache.release_shared), so no index stays open into the next module. Within a module they are
    kept, as between the queries of a user, so tests do not pay a new session each."""
    yield
    cache = sys.modules.get("rsir_qgis_plugin.core.cache")  # not imported: nothing to release
    if cache is not None:
        cache.release_shared()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A private copy of tests/data/tiny_model.onnx: a real ONNX model (untrained ResNet-18 layout at 1/16
    width, 64 px input, 512-d, name "resnet18-untrained-test") made by tests/data/make_tiny_model.py.

    A copy, so that a test that writes beside or over the model (locks, metadata) leaves tests/data alone.
    """
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    shutil.copyfile(TINY_MODEL, path)
    return path


@pytest.fixture(scope="session")
def other_model(tmp_path_factory, tiny_model) -> Path:
    """A second model with other weights (for model-mismatch checks): same graph, one weight changed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tiny_model))
    first = model.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * 1.5, first.name))
    path = tmp_path_factory.mktemp("model2") / "other.onnx"
    onnx.save(model, str(path))
    return path


def town_pixels() -> tuple[np.ndarray, dict]:
    """The real sample raster's pixels (3, 1024, 1024) uint8 and its profile."""
    import rasterio

    with rasterio.open(TOWN_RASTER) as src:
        return src.read(), src.profile


def write_raster(path: Path, pixels: np.ndarray, crs="EPSG:3395", transform=None, nodata=None,
                 colorinterp=None) -> Path:
    """A real GeoTIFF on disk from pixels (bands, H, W)."""
    import rasterio
    from rasterio.transform import from_origin

    bands, height, width = pixels.shape
    transform = transform or from_origin(13467600.0, 1632000.0, 0.1, 0.1)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands,
                       dtype=pixels.dtype, crs=crs, transform=transform, nodata=nodata,
                       tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(pixels)
        if colorinterp:
            dst.colorinterp = colorinterp
    return path


def write_town_crop(folder: Path) -> Path:
    """folder/town_crop.tif: a 384x384 real RGB crop of the town raster, georeferenced like it."""
    from rasterio.windows import Window, transform

    pixels, profile = town_pixels()
    return write_raster(folder / "town_crop.tif", pixels[:, 256:640, 512:896].copy(), crs=profile["crs"],
                        transform=transform(Window(512, 256, 384, 384), profile["transform"]))


def indexed_town_crop(folder: Path, model: Path) -> tuple[Path, Path]:
    """(folder/idx, folder/town_crop.tif): the crop indexed with `model` in 96 px tiles at a 48 px stride."""
    from rsir_qgis_plugin.core.builder import build_index
    from rsir_qgis_plugin.core.params import BuildParams, TilingParams

    raster = write_town_crop(folder)
    build_index(BuildParams(index_dir=folder / "idx", rasters=(raster,), model_path=model,
                            tiling=TilingParams(tile_px=96, stride_px=48)))
    return folder / "idx", raster


@pytest.fixture
def town_crop(tmp_path) -> Path:
    """A 384x384 real RGB crop: small enough for fast builds (with 64 px tiles, 121 windows)."""
    return write_town_crop(tmp_path)


def files_held(folder: Path) -> list[str] | None:
    """The files under `folder` this process has open or memory-mapped; None where there is no /proc to
    tell (only Linux has /proc/self/fd and /proc/self/maps)."""
    proc = Path("/proc/self")
    if not (proc / "maps").is_file():
        return None
    inside = str(Path(folder).resolve()) + os.sep
    opened = []
    for fd in os.listdir(proc / "fd"):
        with contextlib.suppress(OSError):  # closed since listed
            opened.append(os.readlink(proc / "fd" / fd))
    mapped = [line.split(maxsplit=5)[-1] for line in (proc / "maps").read_text().splitlines()]
    return sorted({path for path in opened + mapped if path.startswith(inside)})
