"""`python -m training.evaluate CHECKPOINT_OR_ONNX --data DIR`: retrieval metrics of a model, as JSON.

Every test image queries the test set (paper 000 eq. 9-12; its own image left out) and, separately,
the training set; mAP, mAP@k, P@k, ANMRR (paper 003), per-class AP, the precision-recall curve (PNG
when matplotlib is installed) and, with --rotations, the mAP of rotated queries against the upright
test set. The split is the run's split.json beside a checkpoint, --split FILE, or --split all (every
image of DIR is query and database: data the model never saw).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.folder import load_images, scan_folder
from .data.split import Split, read_split, stratified_split
from .eval.extract import EmbedFn, embed, onnx_embedder, torch_embedder
from .eval.plots import plot_pr_curves
from .eval.report import retrieval_report


@dataclass(frozen=True)
class LoadedModel:
    fn: EmbedFn
    name: str
    kind: str
    input_size: int
    band_indices: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    training: dict
    device: torch.device
    tile_size: int | None = None  # the contract's footprint: images pass through it on their way to input_size


def load_model(path: Path, device: str) -> LoadedModel:
    """A torch checkpoint (weights_only) or an ONNX model read through the plugin's contract."""
    if path.suffix == ".onnx":
        from rsir_qgis_plugin.core.model import read_model

        c = read_model(path).contract
        bands = tuple(c.training.get("data", {}).get("band_indices") or range(1, c.bands + 1))
        return LoadedModel(onnx_embedder(str(path), c.normalized), c.name, "onnx", c.input_size, bands,
                           c.mean, c.std, c.training, torch.device("cpu"), c.tile_size)
    from .models import load_checkpoint

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    net, meta = load_checkpoint(path, dev)
    return LoadedModel(torch_embedder(net), meta["name"], "torch", meta["input_size"],
                       tuple(meta["band_indices"]), tuple(meta["mean"]), tuple(meta["std"]),
                       meta["training"], dev, meta.get("tile_size"))


def resolve_split(model_path: Path, data: Path, choice: str, training: dict) -> tuple[Split | None, str]:
    """(split, where it came from); None means every image of `data` is both query and database."""
    if choice == "all":
        return None, "all"
    if choice:
        return read_split(choice), choice
    beside = model_path.parent / "split.json"
    if beside.is_file():
        return read_split(beside), str(beside)
    # No file: the split is a pure function of (files, seed, fraction); rebuild it from the model card.
    info, cfg = training.get("split", {}), training.get("config", {})
    if "seed" not in info:
        raise SystemExit(f"{model_path}: no split.json beside it and no split in its metadata; "
                         "pass --split FILE or --split all")
    folder = scan_folder(data, training.get("data", {}).get("classes", ()), cfg.get("limit_per_class", 0))
    return stratified_split(folder, info["test_fraction"], info["seed"]), "rebuilt from the model's metadata"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="checkpoint (.pt) or ONNX model (.onnx)")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (class sub-folders)")
    parser.add_argument("--split", default="", help="split.json to use, or 'all' (default: beside the model)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: beside the model)")
    parser.add_argument("--pr-curve", type=Path, default=None, help="PNG output (default: beside the JSON)")
    parser.add_argument("--rotations", type=float, nargs="*", default=[90.0, 45.0],
                        help="also report mAP with test queries rotated by these angles")
    parser.add_argument("--device", default="auto", help="torch checkpoints: auto, cpu, cuda")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4, help="processes decoding images")
    parser.add_argument("--tile-size", type=int, default=None,
                        help="resize each image to this side before the input size (default: the model's "
                             "tile size where it has one, as the engine reads tiles; 0: straight to the input)")
    return parser


def evaluate(args: argparse.Namespace) -> dict:
    t0 = time.time()
    model = load_model(args.model, args.device)
    split, source = resolve_split(args.model, args.data, args.split, model.training)
    if split is None:
        folder = scan_folder(args.data)
        classes, test, train = folder.classes, list(zip(folder.paths, folder.labels)), []
    else:
        classes, test, train = split.classes, list(split.test), list(split.train)

    tile_size = model.tile_size if args.tile_size is None else (args.tile_size or None)

    def images(items):
        return load_images(args.data, [p for p, _ in items], model.band_indices, model.input_size, args.workers,
                           tile_size)

    def run(imgs, degrees=0.0):
        return embed(imgs, model.fn, model.mean, model.std, args.batch_size, model.device, degrees)

    test_images, test_labels = images(test), np.array([label for _, label in test])
    test_emb = run(test_images)
    result = {"model": str(args.model), "kind": model.kind, "name": model.name, "data": str(args.data),
              "split": source, "n_test": len(test), "n_train": len(train),
              "input": {"size": model.input_size, "tile_size": tile_size or model.input_size},
              "test_vs_test": retrieval_report(test_emb, test_labels, test_emb, test_labels, classes, same_set=True)}
    if train:
        train_labels = np.array([label for _, label in train])
        result["test_vs_train"] = retrieval_report(test_emb, test_labels, run(images(train)), train_labels, classes)
    base = result["test_vs_test"]["map"]
    result["rotated_queries"] = {}
    for degrees in args.rotations:
        rotated = retrieval_report(run(test_images, degrees), test_labels, test_emb, test_labels, classes,
                                   same_set=True)
        result["rotated_queries"][f"{degrees:g}"] = {"map": rotated["map"], "drop": base - rotated["map"]}
    result["training"] = model.training  # the model card: configuration, loss, epochs, device, time
    result["seconds"] = round(time.time() - t0, 1)
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    result = evaluate(args)
    out = args.out or args.model.with_name(f"eval-{args.model.stem}-{args.data.name}.json")
    out.write_text(json.dumps(result, indent=1))
    curves = {k: result[k]["pr_curve"] for k in ("test_vs_test", "test_vs_train") if k in result}
    png = args.pr_curve or out.with_suffix(".png")
    try:
        plot_pr_curves(curves, png, f"{result['name']} on {args.data.name}")
    except ImportError:
        png = None
        print("matplotlib is not installed: no precision-recall PNG (the curve is in the JSON)")
    summary = {k: round(result[k]["map"], 4) for k in ("test_vs_test", "test_vs_train") if k in result}
    rotated = {k: round(v["map"], 4) for k, v in result["rotated_queries"].items()}
    print(f"{result['name']}: mAP {summary}, ANMRR {result['test_vs_test']['anmrr']:.4f}, "
          f"rotated queries mAP {rotated}; {out}" + (f", {png}" if png else ""))
    return result


if __name__ == "__main__":
    main()
