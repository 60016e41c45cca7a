"""meta -> ModelContract, the mapping training and export share."""
from __future__ import annotations

import pytest

from export.contract import contract_from_meta
from rsir_qgis_plugin.core.errors import ModelError

META = {"name": "run-7", "embedding_dim": 128, "input_size": 224, "bands": 4, "mean": [0.1, 0.2, 0.3, 0.4],
        "std": [0.5, 0.5, 0.5, 0.5], "normalized": True, "backbone": "resnet18",
        "training": {"data": "AID", "loss": {"name": "snca"}, "metrics": {"test_map": 0.8}}}


def test_meta_maps_to_contract():
    contract = contract_from_meta({**META, "resolution_cm": 50})
    assert (contract.name, contract.embedding_dim, contract.input_size, contract.bands) == ("run-7", 128, 224, 4)
    assert contract.mean == (0.1, 0.2, 0.3, 0.4) and contract.normalized is True
    assert contract.training["metrics"] == {"test_map": 0.8} and contract.resolution_cm == 50.0
    assert contract_from_meta(META, name="renamed").name == "renamed"
    assert contract_from_meta(META).resolution_cm is None


def test_missing_keys_are_named():
    meta = {k: v for k, v in META.items() if k not in ("std", "training")}
    with pytest.raises(ModelError, match="lacks std, training"):
        contract_from_meta(meta)


def test_training_must_be_json():
    with pytest.raises(ModelError, match="not JSON-serialisable"):
        contract_from_meta({**META, "training": {"data": object()}})


def test_a_re_export_at_another_input_size_carries_its_footprint_and_sets_the_old_metrics_aside():
    from export.onnx import resized_meta

    assert resized_meta(META, None, None) is META  # no flags: the checkpoint as it is
    contract = contract_from_meta(resized_meta(META, 288, 224))
    assert (contract.input_size, contract.tile_size, contract.tile_px) == (288, 224, 224)
    assert contract.training["export"] == {"input_size": 288, "tile_size": 224, "trained_input_size": 224,
                                           "source_metrics": {"test_map": 0.8}}
    assert "metrics" not in contract.training  # measured at 224 px: not this export's figures
    assert contract_from_meta(META).tile_size is None  # a checkpoint without one: the input size
    with pytest.raises(ModelError, match="tile size 4 px is outside"):
        contract_from_meta(resized_meta(META, 288, 4))
