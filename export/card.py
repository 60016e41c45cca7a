"""Add measured figures to an exported model's card, in place: evaluations, speed, free-text fields.

    python -m export.card MODEL.onnx [--evaluation eval.json ...] [--metric KEY=NUMBER ...]
                          [--card-field KEY=TEXT ...]

Meant for figures that can only be measured on the written file (an int8 model's mAP and speed): the
graph is untouched, only `metadata_props` change (and so the file's sha256: record figures before an
index is built with the model).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rsir_qgis_plugin.core.model import read_model

from .contract import card_metrics
from .onnx import write_contract


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SystemExit(f"{what} needs KEY=VALUE, got '{item}'")
        pairs.append((key, value))
    return pairs


def update_card(path: Path, evaluations: list[dict], metrics: dict[str, float],
                fields: dict[str, str]) -> None:
    """Merge evaluation headline figures (export.contract.card_metrics), numbers and text into the card."""
    contract = read_model(path).contract
    training = dict(contract.training)
    merged = dict(training.get("metrics", {}))
    for evaluation in evaluations:
        merged.update(card_metrics(evaluation))
    merged.update(metrics)
    training["metrics"] = merged
    training.update(fields)
    write_contract(path, dataclasses.replace(contract, training=training))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.card", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--evaluation", type=Path, action="append", default=[],
                        help="a training.evaluate JSON of this file (repeatable)")
    parser.add_argument("--metric", action="append", default=[], metavar="KEY=NUMBER",
                        help="a measured number, e.g. cpu_speedup_vs_default=2.1 (repeatable)")
    parser.add_argument("--card-field", action="append", default=[], metavar="KEY=TEXT",
                        help="a model-card text field, e.g. licence=Apache-2.0 (repeatable)")
    return parser


def main(args: argparse.Namespace) -> None:
    evaluations = [json.loads(path.read_text()) for path in args.evaluation]
    try:
        metrics = {key: float(value) for key, value in _pairs(args.metric, "--metric")}
    except ValueError as exc:
        raise SystemExit(f"--metric values must be numbers ({exc})") from exc
    update_card(args.model, evaluations, metrics, dict(_pairs(args.card_field, "--card-field")))
    info = read_model(args.model)
    print(f"{args.model}: sha256 {info.sha256[:12]}\n{info.describe()}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
