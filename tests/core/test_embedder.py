"""The embedder on real onnxruntime sessions: contract feeding, devices, Deepness models."""
import json

import numpy as np
import onnx
import pytest

from rsir_qgis_plugin.core.embedder import Embedder
from rsir_qgis_plugin.core.errors import ModelError, RuntimeUnavailableError
from rsir_qgis_plugin.core.model import read_model
from rsir_qgis_plugin.core.runtime import available_devices
from tests.conftest import town_pixels


def tiles(n=4, size=64):
    pixels, _ = town_pixels()
    return np.stack([pixels[:, 512 + 64 * i:512 + 64 * i + size, 512:512 + size] for i in range(n)])


def test_embeddings_are_unit_vectors_and_batches_agree(tiny_model):
    embedder = Embedder(read_model(tiny_model), "cpu")
    batch = tiles()
    together = embedder.embed(batch)
    one_by_one = np.concatenate([embedder.embed(batch[i:i + 1]) for i in range(len(batch))])
    assert together.shape == (4, 512) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, one_by_one, atol=1e-5)


def test_preprocessing_follows_the_contract(tiny_model):
    embedder = Embedder(read_model(tiny_model), "cpu")
    batch = tiles(1)
    expected = (batch / 255.0 - np.array([0.485, 0.456, 0.406])[None, :, None, None]) \
        / np.array([0.229, 0.224, 0.225])[None, :, None, None]
    assert np.allclose(embedder.preprocess(batch), expected, atol=1e-5)


def test_tta_is_invariant_to_90_degree_rotation(tiny_model):
    embedder = Embedder(read_model(tiny_model), "cpu")
    batch = tiles(2)
    rotated = np.ascontiguousarray(np.rot90(batch, 1, axes=(2, 3)))
    assert np.allclose(embedder.embed_tta(batch), embedder.embed_tta(rotated), atol=1e-5)


def test_cuda_on_a_machine_without_it_is_an_error_not_a_silent_cpu_run(tiny_model):
    report = available_devices()
    if report.cuda_listed:
        pytest.skip("this machine offers CUDA")
    with pytest.raises(RuntimeUnavailableError, match="CUDA was asked for"):
        Embedder(read_model(tiny_model), "cuda")
    assert Embedder(read_model(tiny_model), "auto").provider == "CPUExecutionProvider"


def test_a_deepness_recognition_model_is_accepted(tiny_model, tmp_path):
    model = onnx.load(str(tiny_model))
    del model.metadata_props[:]
    for key, value in {"model_type": "Recognition", "tile_size": "64", "resolution": "10",
                       "standardization_mean": json.dumps([0.485, 0.456, 0.406]),
                       "standardization_std": json.dumps([0.229, 0.224, 0.225])}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "deepness.onnx"
    onnx.save(model, str(path))
    info = read_model(path)
    assert (info.contract.embedding_dim, info.contract.input_size, info.contract.bands) == (512, 64, 3)
    assert info.contract.resolution_cm == 10.0
    assert np.allclose(Embedder(info, "cpu").embed(tiles(1)), Embedder(read_model(tiny_model), "cpu").embed(tiles(1)),
                       atol=1e-5)


def test_model_without_contract_is_refused_with_its_name(tiny_model, tmp_path):
    model = onnx.load(str(tiny_model))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="bare.onnx: not an rsir or Deepness recognition model"):
        read_model(path)
    with pytest.raises(ModelError, match="missing.onnx: model file not found"):
        read_model(tmp_path / "missing.onnx")


def test_available_devices_lists_only_providers_rsir_can_use():
    import onnxruntime

    report = available_devices()
    assert "CPUExecutionProvider" in report.providers
    assert set(report.providers) <= {"CUDAExecutionProvider", "CPUExecutionProvider"}
    others = set(onnxruntime.get_available_providers()) - {"CUDAExecutionProvider", "CPUExecutionProvider"}
    assert not any(name in report.describe() for name in others)
