"""Shared fixtures: a small real ONNX model exported from torch, and real GeoTIFFs cut from real imagery."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
TOWN_RASTER = DATA / "oam_town_1024.tif"  # real 0.1 m aerial imagery, see tests/data/README.md
DEFAULT_MODEL = Path(__file__).parent.parent / "rsir_qgis_plugin" / "models" / "default.onnx"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained ResNet-18 embedding net (64 px input, 512-d) exported through export/ (real ONNX)."""
    import torch
    import torchvision

    from export.onnx import export_embedding_model
    from rsir_qgis_plugin.core.model import ModelContract

    class Embedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torchvision.models.resnet18(weights=None)
            self.backbone.fc = torch.nn.Identity()

        def forward(self, x):
            return torch.nn.functional.normalize(self.backbone(x), dim=1)

    torch.manual_seed(0)
    contract = ModelContract(name="resnet18-untrained-test", embedding_dim=512, input_size=64, bands=3,
                             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             training={"data": "none (untrained, for tests)"})
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_embedding_model(Embedding().eval(), contract, path)
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


@pytest.fixture
def town_crop(tmp_path) -> Path:
    """A 384x384 real RGB crop: small enough for fast builds (with 64 px tiles, 121 windows)."""
    return write_town_crop(tmp_path)
