"""The command lines on a tiny checkpoint saved the way training saves one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from export import verify
from rsir_qgis_plugin.core.errors import ModelError
from rsir_qgis_plugin.core.model import read_model

pytestmark = pytest.mark.slow  # the export and verify command lines in child processes, through torch

REPO = Path(__file__).resolve().parents[2]


def tiny_checkpoint(path: Path, seed: int) -> Path:
    from training.models import architecture_meta, build_from_meta

    meta = {**architecture_meta("resnet18", head="gap", pooling="gem", embedding_dim=16, input_size=64, bands=3),
            "name": "tiny-resnet18-gem", "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2],
            "training": {"data": "none", "loss": {"name": "none"}, "metrics": {}}}
    torch.manual_seed(seed)
    torch.save({"meta": meta, "state_dict": build_from_meta(meta).state_dict(), "epoch": 0}, path)
    return path


def test_export_and_verify_command_lines(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "last.pt", seed=0)
    out = tmp_path / "tiny.onnx"
    # The shape training.evaluate writes (figures made up: only their way into the card is tested).
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({
        "data": "/data/aid150", "split": "runs/x/split.json", "n_test": 2000, "n_train": 8000,
        "test_vs_test": {"map": 0.81234, "anmrr": 0.1, "precision_at": {"10": 0.9}},
        "test_vs_train": {"map": 0.85}, "rotated_queries": {"90": {"map": 0.8, "drop": 0.01234}}}))
    run = subprocess.run([sys.executable, "-m", "export.onnx", str(checkpoint), "--out", str(out),
                          "--name", "tiny", "--evaluation", str(evaluation), "--card-field", "licence=MIT"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "parity passed" in run.stderr and "wrote" in run.stderr
    info = read_model(out)
    assert (info.contract.name, info.contract.embedding_dim, info.contract.mean) == ("tiny", 16, (0.4, 0.4, 0.4))
    metrics = info.contract.training["metrics"]
    assert (metrics["aid150_test_map"], metrics["aid150_test_vs_train_map"]) == (0.8123, 0.85)
    assert metrics["aid150_test_map_queries_rotated_90"] == 0.8 and "aid150_protocol" in metrics
    assert info.contract.training["licence"] == "MIT"

    report = verify.main(verify.get_args_parser().parse_args([str(out), str(checkpoint)]))
    assert report.passed and report.min_cosine > 0.9999

    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(SystemExit, match="parity FAILED"):
        verify.main(verify.get_args_parser().parse_args([str(out), str(other)]))


def test_checkpoint_must_hold_meta_and_state_dict(tmp_path):
    from export.checkpoint import load_checkpoint

    torch.save({"state_dict": {}}, tmp_path / "bare.pt")
    with pytest.raises(ModelError, match="'meta' and 'state_dict'"):
        load_checkpoint(tmp_path / "bare.pt")
