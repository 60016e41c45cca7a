"""`python -m training.fit` and `python -m training.evaluate` end to end on the 40 real test scenes."""
from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from training import fit
from training.config import FitConfig, parse_config
from training.models import load_checkpoint

from .conftest import ENV, REPO, SCENES, TINY, run_module

pytestmark = pytest.mark.slow  # training and evaluation runs in child processes (DDP among them)


def test_one_batch_fit_writes_a_complete_run(tiny_run):
    for name in ("split.json", "config.toml", "metrics.csv", "last.pt", "best.pt"):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader((tiny_run / "metrics.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[1]["step"] == "1"   # one batch
    assert float(rows[1]["loss"]) > 0 and 0 <= float(rows[1]["test_map"]) <= 1 and rows[1]["bank_momentum"] == "0.5"
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    meta = ckpt["meta"]
    assert {"name", "backbone", "head", "pooling", "embedding_dim", "input_size", "bands", "mean", "std",
            "normalized", "training"} <= set(meta)
    assert (meta["backbone"], meta["head"], meta["pooling"], meta["embedding_dim"]) == (
        "resnet18", "dual_attention", "gem", 128)
    assert meta["input_size"] == 32 and meta["bands"] == 3 and len(meta["mean"]) == len(meta["std"]) == 3
    assert all(0 < s < 1 for s in meta["std"]) and meta["normalized"] is True
    t = meta["training"]
    assert t["data"]["classes"] == ["Beach", "Forest", "Parking", "StorageTanks"] and t["data"]["n_train"] == 32
    assert t["split"]["seed"] == 0 and t["loss"]["name"] == "snca" and t["loss"]["sigma"] == 0.05
    assert t["epochs"] == 1 and t["metrics"]["test_map"] == pytest.approx(float(rows[1]["test_map"]), abs=1e-5)
    json.dumps(meta)  # the model card goes into ONNX metadata as JSON
    net, _ = load_checkpoint(tiny_run / "last.pt")
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 128) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    # The bank was filled and then moved by the momentum update of the one step.
    assert ckpt["criterion"]["bank.vectors"].shape == (32, 128)


def test_config_file_and_precedence(tmp_path):
    (tmp_path / "run.toml").write_text('data = "somewhere"\nloss = "triplet"\nepochs = 3\nbands = [3, 2, 1]\n')
    cfg = parse_config(["--config", str(tmp_path / "run.toml"), "--epochs", "5"])
    assert (cfg.data, cfg.loss, cfg.epochs, cfg.bands) == ("somewhere", "triplet", 5, (3, 2, 1))
    with pytest.raises(SystemExit):
        (tmp_path / "bad.toml").write_text('data = "x"\nlearning_rate = 1\n')
        parse_config(["--config", str(tmp_path / "bad.toml")])


def _cfg(out, **kw) -> FitConfig:
    base = parse_config(TINY + ["--out", str(out)])
    return dataclasses.replace(base, **kw)


def test_resume_continues_exactly(tmp_path):
    """Two epochs straight == one epoch, stop, --resume for the second: same weights, bank and metrics."""
    kw = dict(head="icsa", loss="snca_ce", epochs=2, batch_size=16, eval_every=1, limit_per_class=6)
    straight = fit.main(_cfg(tmp_path / "a", **kw))
    fit.main(_cfg(tmp_path / "b", stop_after=1, **kw))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 1
    with pytest.raises(SystemExit, match="already holds a run"):
        fit.main(_cfg(tmp_path / "b", **kw))
    resumed = fit.main(_cfg(tmp_path / "b", resume=True, **kw))
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for key in a["criterion"]:
        assert torch.equal(a["criterion"][key], b["criterion"][key]), key
    rows_a = [r["loss"] for r in csv.DictReader((straight / "metrics.csv").read_text().splitlines())]
    rows_b = [r["loss"] for r in csv.DictReader((resumed / "metrics.csv").read_text().splitlines())]
    assert rows_a == rows_b and len(rows_a) == 3


@pytest.mark.parametrize("loss,extra", [("ri_snca", ["--ri-copies", "2"]), ("contrastive", []),
                                        ("snca", ["--bank-update", "ema_encoder"])])
def test_each_training_mode_runs_a_step(tmp_path, loss, extra):
    run = fit.main(parse_config(TINY + ["--out", str(tmp_path / loss), "--loss", loss, "--epochs", "1",
                                        "--head", "gap", "--eval-every", "0", *extra]))
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["meta"]["training"]["loss"]["name"] == loss
    if loss == "ri_snca":
        assert ckpt["criterion"]["bank.vectors"].shape == (32 * 8, 128)
    if "ema_encoder" in extra:
        assert ckpt["ema"] is not None


def test_ddp_on_two_cpu_processes_keeps_the_bank_identical(tmp_path):
    """torchrun with 2 gloo processes: each rank's bank must equal the others' after every epoch
    (fit checks the checksums and fails otherwise)."""
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", "29517", "-m", "training.fit", *TINY, "--batch-size", "8",
                           "--limit-per-class", "5", "--loss", "snca_ce", "--head", "gap", "--epochs", "1",
                           "--eval-every", "0", "--out", str(out)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    meta = torch.load(out / "last.pt", weights_only=True)["meta"]
    assert meta["training"]["device"].startswith("2 x CPU")


def test_evaluate_checkpoint_writes_all_metrics(tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    proc = run_module("training.evaluate", str(tiny_run / "last.pt"), "--data", str(SCENES), "--out", str(out),
                      "--workers", "0")
    result = json.loads(out.read_text())
    assert "mAP" in proc.stdout and out.with_suffix(".png").stat().st_size > 1000
    assert result["n_test"] == 8 and result["n_train"] == 32 and result["split"].endswith("split.json")
    tvt = result["test_vs_test"]
    assert tvt["queries"] == 8 and tvt["database"] == 8
    assert set(tvt) >= {"map", "map_at", "precision_at", "anmrr", "per_class_ap", "pr_curve"}
    assert set(tvt["precision_at"]) == {"5", "10", "20", "50", "100"} and len(tvt["per_class_ap"]) == 4
    assert result["test_vs_train"]["database"] == 32 and 0 <= result["test_vs_train"]["map"] <= 1
    assert set(result["rotated_queries"]) == {"90", "45"}
    # The mAP during training and the evaluation agree: same split, same preprocessing.
    meta = torch.load(tiny_run / "last.pt", weights_only=True)["meta"]
    assert tvt["map"] == pytest.approx(meta["training"]["metrics"]["test_map"], abs=1e-5)


def test_evaluate_onnx_matches_the_checkpoint(tiny_run, tmp_path):
    """The exported model, read through the plugin's contract, gives the checkpoint's mAP; the split is
    rebuilt from the metadata when no split.json lies beside the model."""
    from training import evaluate

    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    run_module("export.onnx", str(tiny_run / "last.pt"), "--out", str(onnx_dir / "m.onnx"))
    args = ["--data", str(SCENES), "--workers", "0", "--rotations"]
    torch_result = evaluate.main([str(tiny_run / "last.pt"), *args, "--out", str(tmp_path / "t.json")])
    onnx_result = evaluate.main([str(onnx_dir / "m.onnx"), *args, "--out", str(tmp_path / "o.json")])
    assert onnx_result["kind"] == "onnx" and onnx_result["split"] == "rebuilt from the model's metadata"
    for key in ("test_vs_test", "test_vs_train"):
        assert onnx_result[key]["map"] == pytest.approx(torch_result[key]["map"], abs=1e-4)


def test_evaluate_on_unseen_data_uses_every_image(tiny_run, tmp_path):
    from training import evaluate

    result = evaluate.main([str(tiny_run / "last.pt"), "--data", str(SCENES), "--split", "all", "--workers", "0",
                            "--rotations", "--out", str(tmp_path / "all.json")])
    assert result["n_test"] == 40 and "test_vs_train" not in result and result["test_vs_test"]["database"] == 40


def test_off_the_shelf_baseline_with_zero_epochs(tmp_path):
    run = fit.main(parse_config(TINY + ["--out", str(tmp_path / "zero"), "--epochs", "0", "--head", "gap",
                                        "--pooling", "avg", "--embedding-dim", "0"]))
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["meta"]["embedding_dim"] == 512 and ckpt["meta"]["projection"] is False


def test_table_runs_every_config_once_and_reports(tmp_path, monkeypatch):
    from training import table

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)  # the runner's fit/evaluate subprocesses: one thread each

    common = "\n".join(f"{k} = {v}" for k, v in [("backbone", '"resnet18"'), ("weights", '"none"'),
                                                   ("input_size", 32), ("batch_size", 32), ("workers", 0)])
    (tmp_path / "a_zero.toml").write_text(common + '\nhead = "gap"\nepochs = 0\n')
    (tmp_path / "b_one.toml").write_text(common + '\nloss = "snca_ce"\nepochs = 1\n')
    configs, runs = sorted(tmp_path.glob("*.toml")), tmp_path / "runs"
    assert table.run_all(configs, SCENES, runs, minutes=5)
    stamp = (runs / "b_one" / "eval.json").stat().st_mtime_ns
    assert table.run_all(configs, SCENES, runs, minutes=5)          # finished runs are skipped
    assert (runs / "b_one" / "eval.json").stat().st_mtime_ns == stamp
    rows = table.report(runs).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| a_zero | resnet18 | none | gap |")
    assert "| snca_ce | 1 | 32 |" in rows[3]


def test_saved_config_reproduces_the_recipe(tiny_run):
    cfg = parse_config(["--config", str(tiny_run / "config.toml")])
    assert (cfg.head, cfg.loss, cfg.input_size, cfg.epochs, cfg.resume) == ("dual_attention", "snca", 32, 1, False)
    assert cfg.data == str(SCENES) and cfg.bands == (1, 2, 3)


def test_a_run_with_a_tile_size_records_it_and_its_export_carries_it(tmp_path, tiny_run):
    """--tile-size: scenes decoded to the tile, then to the input, as the engine reads tiles (issue 22)."""
    from export.contract import contract_from_meta

    run = fit.main(parse_config(TINY + ["--input-size", "40", "--tile-size", "32", "--head", "gap", "--epochs", "1",
                                        "--eval-every", "0", "--out", str(tmp_path / "tiled")]))
    meta = torch.load(run / "last.pt", weights_only=True)["meta"]
    assert (meta["input_size"], meta["tile_size"], meta["training"]["config"]["tile_size"]) == (40, 32, 32)
    assert contract_from_meta(meta).tile_px == 32
    plain = torch.load(tiny_run / "last.pt", weights_only=True)["meta"]
    assert "tile_size" not in plain  # no --tile-size: the input size, no key
