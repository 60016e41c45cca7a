"""fp16 weight storage: half the file, and onnxruntime really computes in float32 (the casts fold at load)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from export.images import synthetic_images, to_model_input
from export.onnx import export_embedding_model
from export.storage import has_fp16_storage
from export.verify import graph_precision, onnx_session, run_onnx


def test_fp16_weights_halve_the_file_and_keep_parity(fp16_weights_model, fp32_model, contract):
    assert graph_precision(fp16_weights_model) == "fp16-weights"
    assert graph_precision(fp32_model) == "fp32"
    ratio = fp16_weights_model.stat().st_size / fp32_model.stat().st_size
    assert 0.45 < ratio < 0.55, ratio
    inputs = to_model_input(synthetic_images(4, contract.bands, contract.input_size, 1), contract)
    a = run_onnx(onnx_session(fp32_model), inputs, 4)
    b = run_onnx(onnx_session(fp16_weights_model), inputs, 4)
    assert ((a * b).sum(axis=1) > 0.9999).all()
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


def test_onnxruntime_folds_the_casts_into_float32_weights(fp16_weights_model, tmp_path):
    # The graph onnxruntime actually runs, written out after its load-time optimisations.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(fp16_weights_model), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    assert not [n for n in optimized.graph.node if n.op_type == "Cast"]
    assert all(i.data_type != TensorProto.FLOAT16 for i in optimized.graph.initializer)


def test_a_graph_computing_in_fp16_is_not_taken_for_fp16_storage(fp16_model):
    assert not has_fp16_storage(onnx.load(str(fp16_model)))
    assert graph_precision(fp16_model) == "fp16"


def test_fp16_compute_and_fp16_storage_exclude_each_other(tmp_path, net, contract):
    with pytest.raises(ValueError, match="exclude each other"):
        export_embedding_model(net, contract, tmp_path / "m.onnx", fp16=True, fp16_weights=True)
    assert not (tmp_path / "m.onnx").exists()
