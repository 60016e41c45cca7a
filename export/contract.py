"""The one mapping from a checkpoint's `meta` dict to the ONNX model contract.

Training writes `meta`, export turns it into metadata_props through this function: both sides share it
so a key renamed in one place cannot silently drop out of the model card. No torch import here.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from rsir_qgis_plugin.core.errors import ModelError
from rsir_qgis_plugin.core.model import ModelContract

REQUIRED_META_KEYS = ("name", "embedding_dim", "input_size", "bands", "mean", "std", "normalized", "training")


def contract_from_meta(meta: Mapping, name: str | None = None) -> ModelContract:
    """The ModelContract a checkpoint's meta describes; `name` overrides meta["name"]."""
    missing = [key for key in REQUIRED_META_KEYS if key not in meta]
    if missing:
        raise ModelError(f"checkpoint meta lacks {', '.join(missing)} (has {', '.join(sorted(meta))})")
    training = meta["training"]
    if not isinstance(training, Mapping):
        raise ModelError(f"checkpoint meta 'training' must be a dict (data, loss, metrics), got {type(training)}")
    try:
        json.dumps(dict(training))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"checkpoint meta 'training' is not JSON-serialisable ({exc})") from exc
    resolution, tile_size = meta.get("resolution_cm"), meta.get("tile_size")
    return ModelContract(
        name=str(name or meta["name"]),
        embedding_dim=int(meta["embedding_dim"]),
        input_size=int(meta["input_size"]),
        bands=int(meta["bands"]),
        mean=tuple(float(v) for v in meta["mean"]),
        std=tuple(float(v) for v in meta["std"]),
        normalized=bool(meta["normalized"]),
        training=dict(training),
        resolution_cm=None if resolution is None else float(resolution),
        tile_size=None if tile_size is None else int(tile_size),
    )


def card_metrics(evaluation: Mapping) -> dict:
    """The headline figures of a `training.evaluate` JSON, for a model card's `metrics`.

    Keys are prefixed with the evaluation data folder's name (e.g. `aid150_test_map`) so that cards
    can carry figures from several datasets.
    """
    prefix = Path(str(evaluation["data"])).name
    test = evaluation["test_vs_test"]
    metrics = {f"{prefix}_test_map": round(test["map"], 4), f"{prefix}_test_anmrr": round(test["anmrr"], 4),
               f"{prefix}_test_p@10": round(test["precision_at"]["10"], 4)}
    if "test_vs_train" in evaluation:
        metrics[f"{prefix}_test_vs_train_map"] = round(evaluation["test_vs_train"]["map"], 4)
    for degrees, rotated in evaluation.get("rotated_queries", {}).items():
        metrics[f"{prefix}_test_map_queries_rotated_{degrees}"] = round(rotated["map"], 4)
    metrics[f"{prefix}_protocol"] = (
        f"training.evaluate on {evaluation['data']} ({evaluation['split']}): {evaluation['n_test']} test "
        f"images each query the test set (mAP per paper 000 eq. 9-12, ANMRR per MPEG-7), and the "
        f"{evaluation['n_train']} training images as database for test_vs_train")
    return metrics
