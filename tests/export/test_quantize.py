"""export.quantize: real onnxruntime static int8 quantisation of small exported models, calibrated on
real image crops (tests/export/data/calibration), against their float32 source."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from export.fusion import fuse_channel_attention
from export.images import load_rgb_batch, to_model_input
from export.onnx import IR_VERSION, OPSET, export_embedding_model
from export.quantize import INT8_MIN_COSINE, QuantizeConfig, calibration_set, quantize_model
from export.verify import ParityError, graph_precision, onnx_session, run_onnx
from rsir_qgis_plugin.core.embedder import Embedder
from rsir_qgis_plugin.core.model import ModelContract, read_model

from .conftest import DATA

pytestmark = pytest.mark.slow  # static int8 quantisation of exported models

CALIBRATION = DATA / "calibration"
ROOT = Path(__file__).resolve().parents[2]


def _real_inputs(contract) -> np.ndarray:
    """The two 224 px OAM scenes and every calibration crop, as the engine feeds them."""
    paths = sorted(DATA.glob("*.jpg")) + sorted(CALIBRATION.glob("*.jpg"))
    return to_model_input(load_rgb_batch(paths, contract.input_size), contract)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, fp32_model) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model-int8.onnx"
    quantize_model(QuantizeConfig(model=fp32_model, calibration=CALIBRATION, out=out))
    return out


def test_int8_model_keeps_the_contract_and_says_how_it_was_made(int8_model, fp32_model, contract):
    info = read_model(int8_model)
    c = info.contract
    assert c.name == contract.name + "-int8"
    for field in ("embedding_dim", "input_size", "bands", "mean", "std", "normalized", "resolution_cm"):
        assert getattr(c, field) == getattr(contract, field), field
    assert c.training["data"] == contract.training["data"]
    assert c.training["precision"] == "int8"
    card = c.training["quantisation"]
    assert card["source_model"] == {"name": contract.name, "sha256": read_model(fp32_model).sha256}
    assert card["source_metrics"] == contract.training["metrics"]  # the source's, not claimed for int8
    assert "metrics" not in c.training
    assert "9 images" in card["calibration"] and "calibration/" in card["calibration"]  # 12 less 3 held out
    assert "per output channel" in card["format"] and "QDQ" in card["format"]
    props = {p.key: p.value for p in onnx.load(str(int8_model)).metadata_props}
    assert props["model_type"] == "Recognition" and props["tile_size"] == str(contract.input_size)


def test_int8_graph_is_quantised_smaller_and_loads_in_old_runtimes(int8_model, fp32_model):
    assert graph_precision(int8_model) == "int8" and graph_precision(fp32_model) == "fp32"
    model = onnx.load(str(int8_model))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]
    assert weights and all(len(w.dims) in (1, 2, 4) for w in weights)
    assert model.ir_version == IR_VERSION
    assert {o.domain or "": o.version for o in model.opset_import} == {"": OPSET}  # no unused imports
    assert int8_model.stat().st_size < 0.35 * fp32_model.stat().st_size
    assert sorted(p.name for p in int8_model.parent.iterdir()) == ["model-int8.onnx"]  # no partial left


def test_int8_embeddings_follow_the_float_model_on_real_images(int8_model, fp32_model, contract):
    inputs = _real_inputs(contract)
    expected = run_onnx(onnx_session(fp32_model), inputs, batch=7)
    got = run_onnx(onnx_session(int8_model), inputs, batch=7)
    cosines = _cosines(expected, got)
    assert cosines.min() >= INT8_MIN_COSINE and cosines.mean() > 0.99
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # normalised in float32


def test_the_engine_probes_and_runs_the_int8_model(int8_model, contract):
    embedder = Embedder(read_model(int8_model), "cpu")  # the probe runs here
    tiles = load_rgb_batch(sorted(CALIBRATION.glob("*.jpg"))[:5], contract.input_size)
    vectors = embedder.embed(tiles)
    assert vectors.shape == (5, contract.embedding_dim) and np.isfinite(vectors).all()
    np.testing.assert_allclose(embedder.embed(tiles[:1])[0], vectors[0], atol=1e-5)  # rows independent


def test_fp16_stored_weights_are_widened_before_quantising(tmp_path, fp16_weights_model, int8_model,
                                                           contract):
    out = tmp_path / "from-fp16.onnx"
    report = quantize_model(QuantizeConfig(model=fp16_weights_model, calibration=CALIBRATION, out=out))
    assert graph_precision(out) == "int8" and report.min_cosine >= INT8_MIN_COSINE
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(out)).graph.initializer)
    inputs = _real_inputs(contract)
    a = run_onnx(onnx_session(out), inputs, batch=7)
    b = run_onnx(onnx_session(int8_model), inputs, batch=7)
    assert _cosines(a, b).min() > 0.97  # the same model, quantised from fp16-rounded weights


def test_quantisation_that_departs_from_the_source_writes_nothing(tmp_path, fp32_model, monkeypatch):
    import export.quantize as quantize

    monkeypatch.setattr(quantize, "INT8_MIN_COSINE", 1.01)  # no int8 model reaches it
    out = tmp_path / "refused.onnx"
    with pytest.raises(ParityError, match="departs from"):
        quantize_model(QuantizeConfig(model=fp32_model, calibration=CALIBRATION, out=out))
    assert list(tmp_path.iterdir()) == []


def test_calibration_takes_only_the_training_split_when_the_card_records_one(tmp_path, contract):
    from dataclasses import replace

    data = tmp_path / "scenes"
    for label in ("savanna", "town"):
        (data / label).mkdir(parents=True)
        for path in CALIBRATION.glob(f"oam_{label}_*.jpg"):
            (data / label / path.name).write_bytes(path.read_bytes())
    card = {"data": {"root": "scenes", "seed": 0, "test_fraction": 0.5, "classes": ["savanna", "town"]},
            "split": {"seed": 0, "test_fraction": 0.5}}
    split_model = replace(contract, training=card)
    chosen = calibration_set(data, split_model, count=100)
    assert len(chosen.images) == 6 and len(chosen.held_out) == 6  # 3 + 3 training images, the test rest
    assert "training split of scenes/" in chosen.description
    everything = calibration_set(data, split_model, count=100, split="all")
    assert len(everything.images) + len(everything.held_out) == 12


class _AttentionNet(nn.Module):
    """A small conv net with the dual attention head and GeM pooling of the bundled default."""

    def __init__(self):
        super().__init__()
        from training.models.attention import DualAttention
        from training.models.pooling import GeM

        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU6(),
                                      nn.Conv2d(16, 48, 3, stride=4, padding=1), nn.ReLU6())
        self.head = DualAttention(48)
        with torch.no_grad():  # trained heads have non-zero attention scales
            self.head.alpha.fill_(0.5)
            self.head.beta.fill_(0.3)
        self.pool = GeM()
        self.proj = nn.Linear(48, 16)

    def forward(self, x):
        return self.proj(self.pool(self.head(self.features(x))).flatten(1))


def test_channel_attention_fuses_into_one_node_that_computes_the_same(tmp_path):
    contract = ModelContract(name="attention-test", embedding_dim=16, input_size=64, bands=3,
                             mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2), training={"data": "none"})
    path = export_embedding_model(_AttentionNet().eval(), contract, tmp_path / "attention.onnx")
    fused, count = fuse_channel_attention(onnx.load(str(path)))
    assert count == 1
    ops = [node.op_type for node in fused.graph.node]
    assert ops.count("MultiHeadAttention") == 1 and ops.count("Softmax") == 1  # spatial attention stays
    fused_path = tmp_path / "fused.onnx"
    onnx.save(fused, str(fused_path))
    inputs = _real_inputs(contract)
    a = run_onnx(onnx_session(path), inputs, batch=7)
    b = run_onnx(onnx_session(fused_path), inputs, batch=7)
    assert _cosines(a, b).min() > 0.99999
    assert fuse_channel_attention(fused)[1] == 0  # nothing left to fuse

    out = tmp_path / "attention-int8.onnx"
    report = quantize_model(QuantizeConfig(model=path, calibration=CALIBRATION, out=out))
    assert report.fused_attention == 1 and report.min_cosine >= INT8_MIN_COSINE
    model = onnx.load(str(out))
    assert "MultiHeadAttention" in {n.op_type for n in model.graph.node}
    assert {o.domain or "" for o in model.opset_import} == {"", "com.microsoft"}
    assert "1 channel-attention block" in read_model(out).contract.training["quantisation"]["fused_attention"]


def test_quantize_command_line(tmp_path, fp32_model):
    out = tmp_path / "cli-int8.onnx"
    result = subprocess.run([sys.executable, "-m", "export.quantize", str(fp32_model), "--calibration",
                             str(CALIBRATION), "--out", str(out), "--images", "6", "--method", "percentile"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "min cosine" in result.stderr and out.is_file()
    card = read_model(out).contract.training["quantisation"]
    assert card["calibration"].startswith("percentile; 6 images")


def test_card_adds_figures_measured_on_the_written_file_and_leaves_the_graph(tmp_path, int8_model):
    import json
    import shutil

    path = tmp_path / "carded.onnx"
    shutil.copy(int8_model, path)
    evaluation = {"data": "../shared/data/aid150", "split": "rebuilt", "n_test": 20, "n_train": 80,
                  "test_vs_test": {"map": 0.61234, "anmrr": 0.3, "precision_at": {"10": 0.7}},
                  "test_vs_train": {"map": 0.6}, "rotated_queries": {"90": {"map": 0.55}}}
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    result = subprocess.run([sys.executable, "-m", "export.card", str(path),
                             "--evaluation", str(tmp_path / "eval.json"), "--metric",
                             "cpu_speedup_vs_default=2.5", "--card-field", "licence=Apache-2.0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    training = read_model(path).contract.training
    assert training["metrics"]["aid150_test_map"] == 0.6123
    assert training["metrics"]["cpu_speedup_vs_default"] == 2.5
    assert training["licence"] == "Apache-2.0" and training["quantisation"]  # the rest of the card is kept
    assert onnx.load(str(path)).graph == onnx.load(str(int8_model)).graph
    bad = subprocess.run([sys.executable, "-m", "export.card", str(path), "--metric", "speed=fast"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "must be numbers" in bad.stderr
