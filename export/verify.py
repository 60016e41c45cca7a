"""Parity of an exported ONNX model with its torch network, on onnxruntime's CPU provider.

Both run on the same inputs: uniform noise and smooth synthetic scenes in several batch sizes (1 and
more, so a graph that baked in its trace batch fails), plus any real images given. The figure of merit
is the cosine similarity of each pair of embeddings, since retrieval ranks by cosine.

Tolerances: fp32 graphs must reach cosine >= 0.9999 (what is left is float reassociation in
onnxruntime's kernels). fp16 graphs must reach cosine >= 0.999: half precision keeps an 11-bit
significand (relative rounding ~5e-4 per weight or operation), and ~50 layers of it add up to a small
angle: measured minimum 0.99985 on EfficientNet-Lite0 (real AID scenes and synthetic images) and
0.9999999 on an untrained ResNet-18, while a real fault (a wrong weight, padding or baked-in batch size)
drops far below 0.99. onnxruntime's CPU provider has no fp16 kernels for most operators and runs an fp16
graph in float32 with fp16-rounded weights, so on CPU this check measures the weight rounding; so it
does for graphs that only store their weights in fp16 (export.storage), which get the same threshold.

    python -m export.verify MODEL.onnx CHECKPOINT [--images a.jpg b.jpg ...]
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from rsir_qgis_plugin.core.errors import ModelError
from rsir_qgis_plugin.core.model import ModelContract
from rsir_qgis_plugin.core.runtime import CPU, import_onnxruntime, inference_session_options

from .graph import EmbeddingGraph
from .images import load_rgb_batch, synthetic_images, to_model_input
from .storage import has_fp16_storage

FP32_MIN_COSINE = 0.9999
FP16_MIN_COSINE = 0.999
DEFAULT_BATCH_SIZES = (1, 5)


class ParityError(ModelError):
    """The ONNX graph does not compute what the torch network computes."""


@dataclass(frozen=True)
class ParityReport:
    model: str
    precision: str  # "fp32", "fp16" or "fp16-weights" (graph_precision)
    min_cosine: float
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    images: int
    threshold: float

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.threshold  # False for NaN too

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"parity {verdict} for {self.model} ({self.precision}): min cosine {self.min_cosine:.7f} "
                f"(threshold {self.threshold}), max abs diff {self.max_abs_diff:.3g}, {self.images} images "
                f"in batches of {', '.join(map(str, self.batch_sizes))}")


QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                 "MatMulInteger")


def graph_precision(model_path: str | Path) -> str:
    """"int8" for a quantised graph (export.quantize), "fp16" when the graph computes in half precision,
    "fp16-weights" when only its stored weights are half precision (widened to float32 at load, see
    export.storage), else "fp32"."""
    model = onnx.load(str(model_path), load_external_data=False)
    if any(node.op_type in QUANTIZED_OPS for node in model.graph.node):
        return "int8"
    if has_fp16_storage(model):
        return "fp16-weights"
    fp16 = any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    return "fp16" if fp16 else "fp32"


def onnx_session(model_path: str | Path, threads: int | None = None):
    """A CPU session with the options the engine's sessions use (core.runtime)."""
    ort = import_onnxruntime()
    return ort.InferenceSession(str(model_path), inference_session_options(ort, threads), providers=[CPU])


def run_onnx(session, inputs: np.ndarray, batch: int) -> np.ndarray:
    """float32 (N, bands, S, S) through the session in chunks of `batch`."""
    name = session.get_inputs()[0].name
    chunks = [session.run(None, {name: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(chunks).astype(np.float32)


@torch.no_grad()
def run_torch(net: nn.Module, inputs: np.ndarray, batch: int, normalize: bool) -> np.ndarray:
    """The fp32 reference: the same wrapper that was exported, without the fp16 casts."""
    graph = EmbeddingGraph(net, normalize=normalize).eval()
    chunks = [graph(torch.from_numpy(inputs[i:i + batch])).numpy() for i in range(0, len(inputs), batch)]
    return np.concatenate(chunks).astype(np.float32)


def check_parity(net: nn.Module, model_path: str | Path, contract: ModelContract,
                 real_images: np.ndarray | None = None,
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, seed: int = 0) -> ParityReport:
    """Compare torch and onnxruntime embeddings; raise ParityError below the precision's threshold.

    real_images: optional uint8 (N, bands, S, S), fed as one extra batch.
    """
    net = net.float().eval()
    session = onnx_session(model_path)
    batches = [synthetic_images(size, contract.bands, contract.input_size, seed + size) for size in batch_sizes]
    if real_images is not None and len(real_images):
        batches.append(real_images)
    cosines, max_abs = [], 0.0
    for pixels in batches:
        inputs = to_model_input(pixels, contract)
        expected = run_torch(net, inputs, len(inputs), contract.normalized)
        got = run_onnx(session, inputs, len(inputs))
        if got.shape != expected.shape:
            raise ParityError(f"{model_path}: a batch of {len(inputs)} gave output {got.shape}, "
                              f"torch gives {expected.shape}")
        cosines.append(row_cosines(expected, got))
        max_abs = max(max_abs, float(np.abs(expected - got).max()))
    precision = graph_precision(model_path)
    report = ParityReport(
        model=str(model_path), precision=precision, min_cosine=float(np.concatenate(cosines).min()),
        max_abs_diff=max_abs, batch_sizes=tuple(len(b) for b in batches), images=sum(len(b) for b in batches),
        threshold=FP32_MIN_COSINE if precision == "fp32" else FP16_MIN_COSINE)
    if not report.passed:
        raise ParityError(report.describe())
    return report


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair; NaN where either row is zero or non-finite, so it can never pass."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a * b).sum(axis=1) / norms
    return np.where(np.isfinite(cos) & (norms > 0), cos, math.nan)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="exported .onnx file")
    parser.add_argument("checkpoint", type=Path, help="the training checkpoint it was exported from")
    parser.add_argument("--images", type=Path, nargs="*", default=[],
                        help="real RGB images to add to the synthetic ones (resized to the model input)")
    return parser


def main(args: argparse.Namespace) -> ParityReport:
    from rsir_qgis_plugin.core.model import read_model

    from .checkpoint import build_net, load_checkpoint

    contract = read_model(args.model).contract  # the file's own metadata: what the engine will feed it
    if args.images and contract.bands != 3:
        raise SystemExit(f"--images are read as RGB; {args.model} takes {contract.bands} bands")
    net = build_net(load_checkpoint(args.checkpoint))
    real = load_rgb_batch(args.images, contract.input_size) if args.images else None
    try:
        report = check_parity(net, args.model, contract, real_images=real)
    except ParityError as exc:
        raise SystemExit(str(exc)) from exc
    print(report.describe())
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
