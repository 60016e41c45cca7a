"""Teach rsir your target (issue 24 part 3): labels -> chips -> `training.fit --init` the index's ONNX model ->
`export.onnx` -> `rsir index build` with the new model; README "Teach rsir your target"."""
from __future__ import annotations

import json

import pytest

from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH
from training.config import parse_config
from training.data.chips import chips_source

from .conftest import SCENES


def test_init_from_an_onnx_model_sets_the_runs_architecture():
    cfg = parse_config(["--data", str(SCENES), "--init", str(DEFAULT_MODEL_PATH)])
    # The bundled default: Lite0, dual attention, GeM, 128-d, run at 160 px over 128 px tiles.
    assert (cfg.backbone, cfg.head, cfg.pooling, cfg.embedding_dim, cfg.input_size, cfg.tile_size, cfg.bands) == (
        "efficientnet_lite0", "dual_attention", "gem", 128, 160, 128, (1, 2, 3))
    # A flag given still wins (fit then refuses the mismatch, naming it).
    assert parse_config(["--data", str(SCENES), "--init", str(DEFAULT_MODEL_PATH), "--head", "gap"]).head == "gap"
    with pytest.raises(SystemExit, match="not found"):
        parse_config(["--data", str(SCENES), "--init", "/nonexistent/model.onnx"])


def test_the_card_names_the_labels_a_chips_folder_came_from(tmp_path):
    assert chips_source(SCENES) is None  # a plain class-folder dataset
    manifest = {"format": "rsir-chips", "version": 1, "labels": {"file": "tanks.gpkg", "sha256": "ab" * 32,
                                                                 "path": "/home/me/tanks.gpkg"},
                "counts": {"positive": 30, "negative": 20, "evil": "x"}, "model": {"name": "default"}}
    (tmp_path / "chips.json").write_text(json.dumps(manifest))
    assert chips_source(tmp_path) == {"labels": {"file": "tanks.gpkg", "sha256": "ab" * 32},
                                      "chips": {"positive": 30, "negative": 20}}
    (tmp_path / "chips.json").write_text("[1, 2")  # not ours: no labels named, no error
    assert chips_source(tmp_path) is None


# The proof: on the AID scene mosaic (tests/core/scene_mosaic.py) in 50 m tiles (9 a scene), StorageTanks is
# the class the bundled model finds worst (a box query's P@20 over each class's scenes: Beach 1.0, Forest
# 1.0, Parking 0.98, StorageTanks 0.80), so it is the target taught.
TARGET = "StorageTanks"
TILE = 50.0
K = 20
ROUNDS = 3  # feedback rounds of each simulated session
SESSIONS = 2  # sessions, each started from a box at the centre of a teaching scene of the target
PER_CLASS = 32  # chips of each class: 64 in all, 52 trained on (fit holds 20 % out for its test mAP)
SEARCHED = 200  # hits asked for, of which the first K of one half of the map are kept


def teaching(col: int, row: int) -> bool:
    """The mosaic's cells in a checkerboard: the analyst labels in the even cells (6 of the target's 10
    scenes); the odd ones (4 scenes, 36 tiles of the target among 180) are held out for measuring."""
    from tests.core.scene_mosaic import SCENE

    return (col // SCENE + row // SCENE) % 2 == 0


def in_half(hits, teach: bool) -> list:
    return [hit for hit in hits if teaching(*hit.window[:2]) == teach][:K]


def tile_box(hit) -> tuple[float, float, float, float]:
    xs, ys = zip(*hit.polygon)
    return min(xs), min(ys), max(xs), max(ys)


def simulated_labels(path, index, classes, transform):
    """Labels of SESSIONS feedback sessions in the teaching half: a box on a target scene, then ROUNDS rounds
    in which the top K hits of that half are marked by their scene's class (the truth) and searched again."""
    from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox, search_feedback
    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box
    from tests.core.scene_mosaic import SCENE, scene_class

    params = SearchParams(k=SEARCHED)
    feedback = Feedback()
    starts = [cell for cell, label in classes.items() if label == TARGET and teaching(*cell)][:SESSIONS]
    for col, row in starts:
        left, top = transform * (col, row)
        margin = (SCENE - TILE) / 2
        box = (left + margin, top - margin - TILE, left + margin + TILE, top - margin)
        feedback = feedback.with_box(LabelledBox(str(path), box, None, True))
        hits = in_half(search_box(index, path, box, None, params).hits, True)
        for _ in range(ROUNDS):
            for hit in hits:
                feedback = feedback.with_box(LabelledBox(str(path), tile_box(hit), None,
                                                         scene_class(classes, *hit.window[:2]) == TARGET))
            hits = in_half(search_feedback(index, feedback, params).hits, True)
    return feedback


def held_out_precision(index, path, classes, transform) -> float:
    """Mean P@20 of box queries on every tile of the held-out target scenes, among the held-out tiles."""
    import numpy as np

    from rsir_qgis_plugin.core.params import SearchParams
    from rsir_qgis_plugin.core.search import search_box
    from tests.core.scene_mosaic import SCENE, scene_class

    precision = []
    for (col, row), label in classes.items():
        if label != TARGET or teaching(col, row):
            continue
        for dx in range(0, SCENE - int(TILE) + 1, int(TILE)):
            for dy in range(0, SCENE - int(TILE) + 1, int(TILE)):
                left, top = transform * (col + dx, row + dy)
                hits = search_box(index, path, (left, top - TILE, left + TILE, top), None,
                                  SearchParams(k=SEARCHED)).hits
                precision.append(np.mean([scene_class(classes, *h.window[:2]) == TARGET
                                          for h in in_half(hits, False)]))
    return float(np.mean(precision))


@pytest.mark.slow  # indexes the mosaic twice, fine-tunes and exports the bundled model
def test_a_model_taught_from_feedback_labels_finds_the_target_better(tmp_path):
    """The whole loop, by its commands, beats the bundled model on the class it is weakest at.

    Shows: labels from three rounds of simulated feedback (2 sessions, 101 labelled tiles: 52 positive, 49
    negative) on half of the mosaic's scenes, exported as chips (32 a class), one epoch of fine-tuning of the
    bundled model from its ONNX file (`--init default.onnx`, 3 steps of 16 on CPU), exported with the contract
    and re-indexed, find StorageTanks better in the other half of the mosaic: mean P@20 of 36 box queries
    (every tile of the 4 held-out StorageTanks scenes), among the held-out scenes' tiles only, measured
    0.637 (bundled) -> 0.708 (taught), the loop in 45 s on 2 cores (96 s under load).
    The model card names the labels file.
    Does not show: generalisation beyond these 40 AID scenes (held-out scenes are the same dataset, sensor
    and scale as the labelled ones, and AID is what the bundled model was trained on); what the other classes
    lose (not measured: the chips teach StorageTanks against one lumped class of everything else); a gain
    that holds across seeds or more epochs (one seeded run; the margin asserted is half the gain measured).
    """
    import hashlib
    import time

    from rsir_qgis_plugin.core.labels_io import write_labels
    from rsir_qgis_plugin.core.model import read_model
    from tests.core.scene_mosaic import indexed_scene_mosaic
    from tests.core.test_cli import rsir

    from .conftest import run_module

    started = time.perf_counter()
    path, index, classes, transform = indexed_scene_mosaic(tmp_path, TILE)
    labels = write_labels(simulated_labels(path, index, classes, transform), tmp_path / "labels.gpkg")
    chips, run, tuned, taught = (tmp_path / name for name in ("chips", "run", "tuned.onnx", "taught"))
    done = rsir("export-chips", index, "--labels", labels, "--out", chips, "--per-class", PER_CLASS)
    assert f"{2 * PER_CLASS} chips written" in done.stdout
    run_module("training.fit", "--data", str(chips), "--init", str(DEFAULT_MODEL_PATH), "--freeze-bn",
               "--epochs", "1", "--batch-size", "16", "--lr", "2e-4", "--backbone-lr-scale", "0.3",
               "--warmup-epochs", "0", "--workers", "0", "--name", "storage-tanks", "--out", str(run))
    run_module("export.onnx", str(run / "last.pt"), "--out", str(tuned), "--fp16-weights")
    rsir("index", "build", taught, path, "--model", tuned, "--tile-metres", TILE, "--stride-metres", TILE)
    card = read_model(tuned).contract.training
    assert card["data"]["labels"] == {"file": "labels.gpkg", "sha256": hashlib.sha256(labels.read_bytes()).hexdigest()}
    assert card["init"]["name"] == read_model(DEFAULT_MODEL_PATH).contract.name
    bundled = held_out_precision(index, path, classes, transform)
    taught_p = held_out_precision(taught, path, classes, transform)
    print(f"\n{TARGET} P@{K} on held-out scenes: bundled {bundled:.3f}, taught {taught_p:.3f}; the loop took "
          f"{time.perf_counter() - started:.0f} s")
    assert taught_p >= bundled + 0.035, (bundled, taught_p)
