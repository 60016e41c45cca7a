"""The bundled default model: accepted by the engine, embeds real aerial images to unit 1280-d vectors."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from export.default_model import EMBEDDING_DIM, INPUT_SIZE, NAME
from export.images import load_rgb, to_model_input
from export.verify import graph_precision, onnx_session, run_onnx
from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH, read_model

DATA = Path(__file__).parent / "data"


def test_bundled_model_contract():
    info = read_model()  # None: the bundled default
    assert info.path == DEFAULT_MODEL_PATH
    c = info.contract
    assert (c.name, c.embedding_dim, c.input_size, c.bands, c.normalized) == (NAME, EMBEDDING_DIM, INPUT_SIZE, 3, True)
    assert info.fixed_batch is None and graph_precision(DEFAULT_MODEL_PATH) == "fp32"
    assert c.training["licence"] == "Apache-2.0"
    assert 0.15 < c.training["metrics"]["aid150_map"] < 1 and "protocol" in str(c.training["metrics"])


def test_bundled_model_embeds_real_images():
    contract = read_model().contract
    parking = load_rgb(DATA / "oam_parking_224.jpg", INPUT_SIZE)
    bridge = load_rgb(DATA / "oam_bridge_224.jpg", INPUT_SIZE)
    pixels = np.stack([parking, np.ascontiguousarray(np.rot90(parking, 1, axes=(1, 2))), bridge])
    out = run_onnx(onnx_session(DEFAULT_MODEL_PATH), to_model_input(pixels, contract), batch=3)
    assert out.shape == (3, 1280) and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # A scene turned by 90 degrees stays nearer itself than a different scene does.
    assert out[0] @ out[1] > out[0] @ out[2] + 0.1
