"""export_embedding_model: a file the engine accepts, with the contract, a dynamic batch, one file."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from export.images import synthetic_images, to_model_input
from export.onnx import IR_VERSION, OPSET, export_embedding_model
from export.verify import ParityError, onnx_session, run_onnx, run_torch
from rsir_qgis_plugin.core.model import read_model


def test_written_model_passes_read_model_with_its_contract(fp32_model, contract):
    info = read_model(fp32_model)
    assert info.contract == contract  # every field, training dict and resolution included
    assert (info.input_name, info.output_name) == ("image", "embedding")
    props = {p.key: p.value for p in onnx.load(str(fp32_model)).metadata_props}
    assert props == contract.to_metadata()


def test_versions_and_single_file(fp32_model):
    model = onnx.load(str(fp32_model), load_external_data=False)
    assert model.ir_version == IR_VERSION == 8
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET == 17
    assert not any(init.HasField("data_location") and init.data_location == onnx.TensorProto.EXTERNAL
                   for init in model.graph.initializer)
    assert sorted(p.name for p in fp32_model.parent.iterdir()) == ["model.onnx"]  # no .data, no partial


def test_batch_axis_is_dynamic_and_rows_independent(fp32_model, net, contract):
    assert read_model(fp32_model).fixed_batch is None
    session = onnx_session(fp32_model)
    inputs = to_model_input(synthetic_images(7, 3, contract.input_size, seed=3), contract)
    whole = run_onnx(session, inputs, batch=7)
    one_by_one = run_onnx(session, inputs, batch=1)
    assert whole.shape == (7, contract.embedding_dim)
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(whole, run_torch(net, inputs, 7, normalize=True), atol=1e-4)


def test_unnormalised_contract_leaves_output_as_the_net_gives_it(tmp_path, net, contract):
    raw = replace(contract, normalized=False)
    path = export_embedding_model(net, raw, tmp_path / "raw.onnx")
    inputs = to_model_input(synthetic_images(3, 3, contract.input_size, seed=4), contract)
    out = run_onnx(onnx_session(path), inputs, batch=3)
    with torch.no_grad():
        expected = net(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)


def test_wrong_embedding_dim_is_refused_before_writing(tmp_path, net, contract):
    wrong = replace(contract, embedding_dim=16)
    with pytest.raises(ValueError, match=r"contract says \(2, 16\)"):
        export_embedding_model(net, wrong, tmp_path / "wrong.onnx")
    assert list(tmp_path.iterdir()) == []


class BatchDependentNet(nn.Module):
    """Branches in Python on the batch size: tracing bakes in the branch of the trace batch (2)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        z = self.body(x)
        return z if x.shape[0] == 2 else -z


def test_export_that_fails_parity_leaves_no_file(tmp_path, contract):
    small = replace(contract, embedding_dim=8)
    with pytest.warns(torch.jit.TracerWarning), pytest.raises(ParityError, match="FAILED"):
        export_embedding_model(BatchDependentNet().eval(), small, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []
