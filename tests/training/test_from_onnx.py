"""`training.from_onnx` and fine-tuning from it (`training.fit --init ... --freeze-bn`), on real exports."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

from training import fit
from training.config import parse_config
from training.models import load_checkpoint

from .conftest import ENV, REPO, SCENES, TINY, run_module

pytestmark = pytest.mark.slow  # exports, rebuilds and fine-tunes through torch


def onnx_embeddings(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def scene_batch(size: int) -> np.ndarray:
    """Real scenes of tests/data, resized and roughly normalised, as a model is fed."""
    from PIL import Image

    paths = sorted(SCENES.glob("*/*.jpg"))[::5]
    images = [np.asarray(Image.open(p).convert("RGB").resize((size, size)), np.float32) / 255 for p in paths]
    return ((np.stack(images).transpose(0, 3, 1, 2) - 0.4) / 0.2).astype(np.float32)


@pytest.fixture(scope="module")
def rebuilt(tiny_run, tmp_path_factory):
    """The tiny run exported with fp16 weight storage (as the bundled models are), then rebuilt."""
    out = tmp_path_factory.mktemp("from_onnx")
    run_module("export.onnx", str(tiny_run / "last.pt"), "--out", str(out / "m.onnx"), "--fp16-weights")
    run_module("training.from_onnx", str(out / "m.onnx"), "--out", str(out / "m.pt"))
    return out / "m.onnx", out / "m.pt"


def test_a_rebuilt_checkpoint_computes_what_the_onnx_model_does(rebuilt, tiny_run):
    model, ckpt = rebuilt
    net, meta = load_checkpoint(ckpt)
    original = torch.load(tiny_run / "last.pt", weights_only=True)["meta"]
    assert meta["batchnorm_folded"] is True and meta["name"] == original["name"]
    for key in ("backbone", "head", "pooling", "embedding_dim", "input_size", "bands", "mean", "std"):
        assert meta[key] == pytest.approx(original[key]) if key in ("mean", "std") else meta[key] == original[key]
    x = scene_batch(meta["input_size"])
    with torch.no_grad():
        ours = net(torch.from_numpy(x)).numpy()
    cosine = (ours * onnx_embeddings(model, x)).sum(1)
    assert cosine.min() > 0.9999, cosine
    # Every BatchNorm became the identity plus the folded bias.
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(torch.all(bn.running_mean == 0) and torch.all(bn.weight == 1) for bn in bns)


def test_the_bundled_default_rebuilds_exactly(tmp_path):
    model = REPO / "rsir_qgis_plugin" / "models" / "default.onnx"
    run_module("training.from_onnx", str(model), "--out", str(tmp_path / "default.pt"))
    net, meta = load_checkpoint(tmp_path / "default.pt")
    # The bundled default runs at 160 px over 128 px tiles (issue 22): the checkpoint keeps both.
    assert (meta["backbone"], meta["head"], meta["input_size"], meta["tile_size"]) == (
        "efficientnet_lite0", "dual_attention", 160, 128)
    x = scene_batch(160)[:4]
    with torch.no_grad():
        cosine = (net(torch.from_numpy(x)).numpy() * onnx_embeddings(model, x)).sum(1)
    assert cosine.min() > 0.9999, cosine


def test_fine_tuning_starts_from_the_model_and_keeps_its_statistics(rebuilt, tiny_run, tmp_path):
    _, ckpt = rebuilt
    head = ["--head", "dual_attention", "--loss", "snca", "--epochs", "1", "--init", str(ckpt)]
    with pytest.raises(SystemExit, match="--freeze-bn"):
        fit.main(parse_config(TINY + head + ["--out", str(tmp_path / "unfrozen")]))
    with pytest.raises(SystemExit, match="another architecture.*head"):
        fit.main(parse_config(TINY + ["--head", "gap", "--loss", "snca", "--epochs", "1", "--init", str(ckpt),
                                      "--freeze-bn", "--out", str(tmp_path / "other")]))
    run = fit.main(parse_config(TINY + head + ["--freeze-bn", "--lr", "0.01", "--out", str(tmp_path / "ft")]))
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    original = list(csv.DictReader((tiny_run / "metrics.csv").read_text().splitlines()))
    # Epoch 0 evaluates the starting weights: the tiny run's own final mAP, not an untrained net's.
    assert float(rows[0]["test_map"]) == pytest.approx(float(original[-1]["test_map"]), abs=1e-3)
    tuned = torch.load(run / "last.pt", weights_only=True)
    start = torch.load(ckpt, weights_only=True)["state_dict"]
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(tuned["state_dict"][k], start[k]) for k in stats)
    assert any(not torch.equal(tuned["state_dict"][k], start[k]) for k in start if k.endswith(".weight"))
    meta = tuned["meta"]
    assert meta["batchnorm_folded"] is True
    assert meta["training"]["init"]["name"] == start_name(ckpt) and meta["training"]["init"]["epochs"] == 1


def start_name(ckpt) -> str:
    return torch.load(ckpt, weights_only=True)["meta"]["name"]


def test_interpolating_a_fine_tune_with_its_start(rebuilt, tmp_path):
    _, ckpt = rebuilt
    run = fit.main(parse_config(TINY + ["--head", "dual_attention", "--loss", "snca", "--epochs", "1", "--init",
                                        str(ckpt), "--freeze-bn", "--lr", "0.01", "--name", "tuned",
                                        "--out", str(tmp_path / "ft")]))
    start = torch.load(ckpt, weights_only=True)["state_dict"]
    tuned = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    for alpha in ("0", "0.5", "1"):
        run_module("training.interpolate", str(ckpt), str(run / "last.pt"), "--alpha", alpha,
                   "--out", str(tmp_path / f"mix{alpha}.pt"))
    ends = [load_checkpoint(tmp_path / f"mix{a}.pt")[0].state_dict() for a in ("0", "1")]
    mixed, meta = load_checkpoint(tmp_path / "mix0.5.pt")
    key = next(k for k in start if k.endswith(".weight") and not torch.equal(start[k], tuned[k]))
    assert torch.allclose(ends[0][key], start[key]) and torch.allclose(ends[1][key], tuned[key])
    assert torch.allclose(mixed.state_dict()[key], (start[key] + tuned[key]) / 2, atol=1e-6)
    assert meta["interpolation"]["alpha"] == 0.5 and meta["batchnorm_folded"] is True
    assert meta["training"]["metrics"] == {}  # the tuned run's figures are not the mix's
    # A checkpoint the fine-tune did not start from is refused.
    proc = subprocess.run([sys.executable, "-m", "training.interpolate", str(run / "last.pt"), str(run / "last.pt"),
                           "--alpha", "0.5", "--out", str(tmp_path / "bad.pt")], cwd=REPO, env=ENV,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "did not start from" in proc.stderr
