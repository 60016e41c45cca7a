"""The bundled default model: accepted by the engine, documented by its card, embeds real aerial images."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from export.images import load_rgb, to_model_input
from export.verify import graph_precision, onnx_session, run_onnx
from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH, read_model

DATA = Path(__file__).parent / "data"


def test_bundled_model_contract_and_card():
    info = read_model()  # None: the bundled default
    assert info.path == DEFAULT_MODEL_PATH
    c = info.contract
    assert c.bands == 3 and c.normalized and info.fixed_batch is None
    # float32 compute: a half-precision graph runs 2-3x slower on onnxruntime's CPU kernels.
    assert graph_precision(DEFAULT_MODEL_PATH) in ("fp32", "fp16-weights")
    for field in ("licence", "source", "data", "loss", "metrics"):
        assert c.training.get(field), f"the model card lacks '{field}'"
    # Retrieval quality on the AID@150px test split, measured on this very file's checkpoint.
    assert c.training["metrics"]["aid150_test_map"] > 0.85 and "aid150_protocol" in c.training["metrics"]


def test_bundled_model_embeds_real_images():
    contract = read_model().contract
    parking = load_rgb(DATA / "oam_parking_224.jpg", contract.input_size)
    bridge = load_rgb(DATA / "oam_bridge_224.jpg", contract.input_size)
    pixels = np.stack([parking, np.ascontiguousarray(np.rot90(parking, 1, axes=(1, 2))), bridge])
    out = run_onnx(onnx_session(DEFAULT_MODEL_PATH), to_model_input(pixels, contract), batch=3)
    assert out.shape == (3, contract.embedding_dim) and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # A scene turned by 90 degrees stays nearer itself than a different scene does.
    assert out[0] @ out[1] > out[0] @ out[2] + 0.1
