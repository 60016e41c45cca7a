"""Shared fixtures: a tiny untrained ResNet-18 embedding net and its fp32/fp16 exports (made once)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from export.onnx import export_embedding_model
from rsir_qgis_plugin.core.model import ModelContract

DATA = Path(__file__).parent / "data"
EMBEDDING_DIM = 32
INPUT_SIZE = 64  # small: the whole module stays fast on two cores


def resnet18_embedding(seed: int) -> torch.nn.Module:
    """Untrained torchvision ResNet-18 whose fc layer is the 32-d embedding."""
    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=EMBEDDING_DIM).eval()


@pytest.fixture(scope="session")
def contract() -> ModelContract:
    return ModelContract(
        name="resnet18-untrained-test", embedding_dim=EMBEDDING_DIM, input_size=INPUT_SIZE, bands=3,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), normalized=True,
        training={"data": "none (untrained)", "loss": "none", "metrics": {"aid150_map": 0.05}},
        resolution_cm=30.0)


@pytest.fixture(scope="session")
def make_net():
    return resnet18_embedding


@pytest.fixture(scope="session")
def net() -> torch.nn.Module:
    return resnet18_embedding(seed=0)


@pytest.fixture(scope="session")
def fp32_model(tmp_path_factory, net, contract) -> Path:
    torch.set_num_threads(2)
    return export_embedding_model(net, contract, tmp_path_factory.mktemp("fp32") / "model.onnx")


@pytest.fixture(scope="session")
def fp16_model(tmp_path_factory, net, contract) -> Path:
    return export_embedding_model(net, contract, tmp_path_factory.mktemp("fp16") / "model.onnx", fp16=True)


@pytest.fixture(scope="session")
def fp16_weights_model(tmp_path_factory, net, contract) -> Path:
    return export_embedding_model(net, contract, tmp_path_factory.mktemp("fp16w") / "model.onnx", fp16_weights=True)
