"""The parity check: passes for the exported net (fp32 and fp16 tolerances), fails for another net."""
from __future__ import annotations

from dataclasses import replace

import onnx
import pytest
from torch import nn

from export.onnx import export_embedding_model
from export.verify import FP16_MIN_COSINE, FP32_MIN_COSINE, ParityError, check_parity, graph_precision


def test_fp32_parity(fp32_model, net, contract):
    report = check_parity(net, fp32_model, contract, batch_sizes=(1, 3, 8))
    assert report.passed and report.precision == "fp32" and report.threshold == FP32_MIN_COSINE
    assert report.min_cosine >= 0.9999 and report.max_abs_diff < 1e-4
    assert report.batch_sizes == (1, 3, 8) and report.images == 12


def test_fp16_keeps_float32_io_and_passes_its_tolerance(fp16_model, fp32_model, net, contract):
    model = onnx.load(str(fp16_model))
    assert graph_precision(fp16_model) == "fp16"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16_model.stat().st_size < 0.6 * fp32_model.stat().st_size
    report = check_parity(net, fp16_model, contract)
    assert report.passed and report.threshold == FP16_MIN_COSINE
    assert report.max_abs_diff > 0  # the weights really are rounded to half precision


def test_parity_fails_against_a_net_with_other_weights(fp32_model, contract, make_net):
    with pytest.raises(ParityError, match=r"parity FAILED .* min cosine"):
        check_parity(make_net(seed=1), fp32_model, contract)


class Float32Island(nn.Module):
    """Runs its head in float32 by itself, as mixed-precision code does (e.g. an attention softmax)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 8)

    def forward(self, x):
        z = self.conv(x).mean(dim=(2, 3))
        return self.head(z.float()).to(z.dtype)


def test_fp16_leaves_float32_islands_in_float32(tmp_path, contract):
    path = export_embedding_model(Float32Island().eval(), replace(contract, embedding_dim=8),
                                  tmp_path / "island.onnx", fp16=True)
    weights = {tuple(init.dims): init.data_type for init in onnx.load(str(path)).graph.initializer}
    assert weights[(8, 3, 3, 3)] == onnx.TensorProto.FLOAT16  # the conv: half
    assert weights[(8, 8)] == onnx.TensorProto.FLOAT  # the head: kept float32, as its code asks
