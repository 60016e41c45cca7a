"""`python -m training.table`: run a set of experiment configs to completion, then tabulate them.

    python -m training.table run training/configs/aid150/*.toml --data DIR --runs RUNS [--minutes 9]
    python -m training.table report RUNS [--out table.md]

`run` trains each config that has no RUNS/<config name>/eval.json yet (resuming an interrupted run) and
evaluates its last.pt (never best.pt, which was chosen on the test split) into that eval.json.
It stops before --minutes would pass, so that on a machine with a per-command time limit the same
command can simply be repeated until it prints "all done". `report` writes one markdown row per run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import checkpoint
from .config import FitConfig, read_toml


def _finished(run: Path, epochs: int) -> bool:
    last = run / "last.pt"
    return last.is_file() and checkpoint.load(last)["epoch"] >= epochs


def run_all(configs: Sequence[Path], data: Path, runs: Path, minutes: float, python: str = sys.executable) -> bool:
    """Train and evaluate every unfinished config within `minutes`; True when all are done."""
    deadline = time.time() + minutes * 60
    for config in configs:
        run = runs / config.stem
        if (run / "eval.json").is_file():  # evaluated: done, even if its checkpoints were not kept
            continue
        epochs = int(read_toml(config).get("epochs", FitConfig.epochs))
        if not _finished(run, epochs):
            left = (deadline - time.time()) / 60
            if left < 1:
                return False
            cmd = [python, "-m", "training.fit", "--config", str(config), "--data", str(data), "--out", str(run),
                   "--time-limit", f"{left:.2f}"] + (["--resume"] if (run / "last.pt").is_file() else [])
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            if not _finished(run, epochs):
                return False
        subprocess.run([python, "-m", "training.evaluate", str(run / "last.pt"), "--data", str(data),
                        "--out", str(run / "eval.json")], check=True)
    print("all done", flush=True)
    return True


COLUMNS = ("run", "backbone", "weights", "head", "pooling", "loss", "epochs", "input", "mAP test/test",
           "mAP test/train", "mAP@20", "P@10", "ANMRR", "mAP rot 90", "mAP rot 45", "train s", "device")


def report(runs: Path) -> str:
    """A markdown table of every RUNS/*/eval.json."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for path in sorted(runs.glob("*/eval.json")):
        r = json.loads(path.read_text())
        t, tt = r["training"], r["test_vs_test"]
        c = t["config"]
        rot = r["rotated_queries"]
        cells = [path.parent.name, c["backbone"], c["weights"], c["head"], c["pooling"], t["loss"]["name"],
                 t["epochs"], c["input_size"], f"{tt['map']:.3f}",
                 f"{r['test_vs_train']['map']:.3f}" if "test_vs_train" in r else "",
                 f"{tt['map_at']['20']:.3f}", f"{tt['precision_at']['10']:.3f}", f"{tt['anmrr']:.3f}",
                 f"{rot['90']['map']:.3f}" if "90" in rot else "", f"{rot['45']['map']:.3f}" if "45" in rot else "",
                 f"{t['train_seconds']:.0f}", t["device"]]
        lines.append("| " + " | ".join(str(v) for v in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser("python -m training.table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train and evaluate unfinished configs")
    p_run.add_argument("configs", type=Path, nargs="+")
    p_run.add_argument("--data", type=Path, required=True)
    p_run.add_argument("--runs", type=Path, required=True)
    p_run.add_argument("--minutes", type=float, default=9.0, help="stop before this much time has passed")
    p_rep = sub.add_parser("report", help="markdown table of the evaluated runs")
    p_rep.add_argument("runs", type=Path)
    p_rep.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "run":
        run_all(args.configs, args.data, args.runs, args.minutes)
    else:
        table = report(args.runs)
        if args.out:
            args.out.write_text(table)
        print(table, end="")


if __name__ == "__main__":
    main()
