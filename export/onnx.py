"""torch embedding network -> one self-contained ONNX file carrying the rsir model contract.

The graph: input `image` float32 (N, bands, S, S) with a dynamic batch axis, fed (x/255 - mean)/std;
output `embedding` float32 (N, D), L2-normalised in the graph when the contract says `normalized`.
Opset 17 and IR version 8, so onnxruntime >= 1.15 (in older QGIS installs) loads it.

torch 2.14's default (dynamo) exporter writes opset 18 / IR 10 and its down-conversion to opset 17
fails on ReduceMean; the TorchScript exporter (dynamo=False, deprecated but present) writes opset 17 /
IR 8 natively, so it is the one used here. The written versions are checked, never assumed.

    python -m export.onnx CHECKPOINT --out model.onnx [--fp16 | --fp16-weights] [--name NAME]
                          [--input-size S] [--tile-size T]

--input-size re-exports the same weights at another input (the network is rebuilt for it: convolutions
and GeM do not depend on the size); --tile-size sets the contract's footprint, the source pixels a
default tile covers before it is resampled to the input. A net trained on 128 px scenes with random
resized crops has seen objects larger than the test scenes show them: 128 px tiles fed at 160 px show
them that way (the model card says so under `export`).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from rsir_qgis_plugin.core.model import ModelContract

from .graph import EmbeddingGraph, half_precision
from .storage import store_weights_fp16
from .verify import check_parity

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
# Traced with 2 images, not 1: a batch of one lets size-1 broadcasts slip into the graph unseen.
TRACE_BATCH = 2

log = logging.getLogger("export")  # by name: under `python -m` __name__ is __main__


def export_embedding_model(net: nn.Module, contract: ModelContract, out_path: str | Path,
                           fp16: bool = False, verify: bool = True,
                           verify_images: np.ndarray | None = None, fp16_weights: bool = False) -> Path:
    """Write `net` as an rsir ONNX model at out_path and return the path.

    The net maps normalised float32 (N, bands, S, S) to (N, D). With fp16 the weights and compute are
    half precision between float32 input and output casts; with fp16_weights only the stored weights are
    (export.storage: half the file, float32 compute). With verify (the default) the file only
    replaces out_path after passing the parity check of export.verify; a failed export leaves nothing.
    verify_images: real uint8 (N, bands, S, S) images the parity check adds to its synthetic ones.
    """
    if fp16 and fp16_weights:
        raise ValueError("fp16 (half-precision compute) and fp16_weights (half-precision storage) exclude each other")
    out_path = Path(out_path)
    reference = copy.deepcopy(net).float().eval()  # the caller's net is never converted or moved
    example = torch.randn(TRACE_BATCH, contract.bands, contract.input_size, contract.input_size,
                          generator=torch.Generator().manual_seed(0))
    traced = half_precision(reference, example) if fp16 else reference
    graph = EmbeddingGraph(traced, normalize=contract.normalized, fp16=fp16).eval()
    _check_output_shape(graph, example, contract)

    partial = out_path.with_name(f".{out_path.name}.partial")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _trace(graph, example, partial)
        model = _fold_constants(onnx.load(str(partial)))
        if fp16_weights:
            model = store_weights_fp16(model)
        set_contract_metadata(model, contract)
        _check_versions(model, partial)
        onnx.checker.check_model(model)
        onnx.save(model, str(partial))  # one file: onnx.save only splits out weights when asked to
        report = check_parity(reference, partial, contract, real_images=verify_images) if verify else None
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    if report is not None:
        log.info(dataclasses.replace(report, model=str(out_path)).describe())
    return out_path


def set_contract_metadata(model: onnx.ModelProto, contract: ModelContract) -> None:
    """Replace the model's metadata_props with the contract's (rsir and Deepness keys)."""
    onnx.helper.set_model_props(model, contract.to_metadata())


def write_contract(path: str | Path, contract: ModelContract) -> None:
    """Rewrite the metadata of an exported file in place, e.g. to add metrics measured on it."""
    model = onnx.load(str(path))
    set_contract_metadata(model, contract)
    onnx.save(model, str(path))


def configure_logging() -> None:
    """INFO for export's own progress lines; other libraries (onnxscript's optimiser) stay at WARNING."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("export").setLevel(logging.INFO)


def _check_output_shape(graph: nn.Module, example: torch.Tensor, contract: ModelContract) -> None:
    with torch.no_grad():
        out = graph(example)
    if tuple(out.shape) != (len(example), contract.embedding_dim):
        raise ValueError(f"model '{contract.name}': the net maps {tuple(example.shape)} to {tuple(out.shape)}, "
                         f"the contract says ({len(example)}, {contract.embedding_dim})")


def _trace(graph: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which cannot write opset 17 (see top).
        warnings.simplefilter("ignore", DeprecationWarning)
        # Slices with steps != 1 stay unfolded in the trace; _fold_constants handles them afterwards.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            graph, (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True)


def _fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold the shape arithmetic the TorchScript exporter leaves around static pads (452 -> 133 nodes on
    EfficientNet-Lite0); opset and IR version are kept, parity is checked afterwards."""
    from onnxscript import optimizer

    return optimizer.optimize(model)


def _check_versions(model: onnx.ModelProto, path: Path) -> None:
    opset = {entry.domain: entry.version for entry in model.opset_import}.get("")
    if model.ir_version != IR_VERSION or opset != OPSET:
        raise RuntimeError(f"{path}: exporter wrote IR version {model.ir_version}, opset {opset}; rsir models "
                           f"need IR {IR_VERSION} and opset {OPSET} for onnxruntime >= 1.15")


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path
    out: Path
    fp16: bool
    fp16_weights: bool
    name: str | None
    verify: bool
    input_size: int | None = None  # None: the checkpoint's
    tile_size: int | None = None  # None: the checkpoint's (absent: the input size)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.onnx",
                                     description="Export a training checkpoint to an rsir ONNX model.")
    parser.add_argument("checkpoint", type=Path, help='torch.save({"meta": ..., "state_dict": ...}) file')
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true",
                           help="half-precision weights and compute (input and output stay float32)")
    precision.add_argument("--fp16-weights", action="store_true",
                           help="half-precision stored weights, float32 compute: half the file at fp32 speed")
    parser.add_argument("--name", help="model name in the metadata (default: the checkpoint's meta name)")
    parser.add_argument("--evaluation", type=Path,
                        help="a training.evaluate JSON whose headline figures go into the model card's metrics")
    parser.add_argument("--card-field", action="append", default=[], metavar="KEY=TEXT",
                        help="set a model-card field, e.g. licence=Apache-2.0 (repeatable)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the torch/onnxruntime parity check")
    parser.add_argument("--input-size", type=int, help="export at this input size (default: the checkpoint's)")
    parser.add_argument("--tile-size", type=int,
                        help="a default tile's side in source pixels, resampled to the input (default: the input)")
    return parser


def resized_meta(meta: dict, input_size: int | None, tile_size: int | None) -> dict:
    """The checkpoint's meta for an export at another input size and/or tile footprint; the card records
    both and the size the weights were trained at. The card's metrics were measured at the old sizes:
    they move to export.source_metrics (measure the new file with training.evaluate, add with export.card)."""
    if input_size is None and tile_size is None:
        return meta
    size = int(meta["input_size"] if input_size is None else input_size)
    training = dict(meta["training"])
    earlier = training.get("export", {})
    training["export"] = {
        "input_size": size, "tile_size": tile_size if tile_size is not None else size,
        "trained_input_size": earlier.get("trained_input_size", meta["input_size"]),
        "source_metrics": training.pop("metrics", {})}
    resized = {**meta, "input_size": size, "training": training}
    if tile_size is not None:
        resized["tile_size"] = int(tile_size)
    return resized


def main(args: argparse.Namespace) -> Path:
    from rsir_qgis_plugin.core.model import read_model

    from .checkpoint import build_net, load_checkpoint
    from .contract import card_metrics, contract_from_meta

    cfg = ExportConfig(checkpoint=args.checkpoint, out=args.out, fp16=args.fp16,
                       fp16_weights=args.fp16_weights, name=args.name,
                       verify=args.verify, input_size=args.input_size, tile_size=args.tile_size)
    configure_logging()
    log.info("export: %s", cfg)
    checkpoint = load_checkpoint(cfg.checkpoint)
    checkpoint = dataclasses.replace(checkpoint, meta=resized_meta(checkpoint.meta, cfg.input_size,
                                                                  cfg.tile_size))
    meta = checkpoint.meta
    training = dict(meta["training"])
    if args.evaluation is not None:
        evaluated = card_metrics(json.loads(args.evaluation.read_text()))
        training["metrics"] = {**training.get("metrics", {}), **evaluated}
    for field in args.card_field:
        key, separator, text = field.partition("=")
        if not separator or not key:
            raise SystemExit(f"--card-field needs KEY=TEXT, got '{field}'")
        training[key] = text
    meta = {**meta, "training": training}
    contract = contract_from_meta(meta, name=cfg.name)
    path = export_embedding_model(build_net(checkpoint), contract, cfg.out, fp16=cfg.fp16, verify=cfg.verify,
                                  fp16_weights=cfg.fp16_weights)
    info = read_model(path)
    log.info("wrote %s (%.1f MB, sha256 %s): %s", path, path.stat().st_size / 1e6, info.sha256[:12], info.describe())
    return path


if __name__ == "__main__":
    main(get_args_parser().parse_args())
