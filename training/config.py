"""The training configuration: one frozen dataclass, its command line and its TOML file.

Precedence, lowest first: the defaults below, the run's own config.toml when resuming, --config FILE,
then the command line. Every field is a flag (`embedding_dim` -> `--embedding-dim`) and a TOML key.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .losses import LOSSES
from .models.attention import HEADS
from .models.backbones import BACKBONES
from .models.pooling import POOLINGS


def _f(default, help: str, choices: Sequence[str] | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class FitConfig:
    # data
    data: str = _f("", "dataset folder: one sub-folder of images per class")
    out: str = _f("", "run folder (default runs/<name>): split, config, checkpoints, metrics")
    name: str = _f("", "model name written into the checkpoint (default rsir-<backbone>-<head>-<loss>)")
    classes: tuple[str, ...] = _f((), "only these class folders (default all)")
    limit_per_class: int = _f(0, "only the first N images of each class (0: all)")
    bands: tuple[int, ...] = _f((1, 2, 3), "bands to read, 1-based")
    input_size: int = _f(224, "model input size in pixels (square)")
    tile_size: int = _f(0, "decode each image to this side first, then to --input-size, as the engine reads the "
                           "model's tiles and resamples them; the model's tile size in its contract (0: the input)")
    test_fraction: float = _f(0.2, "fraction of each class held out for testing")
    split_seed: int = _f(0, "seed of the stratified split")
    split: str = _f("", "reuse this split.json instead of making one")
    train_per_class: int = _f(0, "train on at most N images of each class, same test split (0: all)")
    workers: int = _f(4, "processes decoding images")
    # model
    backbone: str = _f("efficientnet_lite0", "backbone", tuple(BACKBONES))
    weights: str = _f("imagenet", "backbone weights: none, imagenet, or a state-dict path")
    init: str = _f("", "start from this checkpoint's or rsir ONNX model's network (an index's model, a bundled "
                       "one): its architecture is the default, fresh optimiser, schedule and bank")
    freeze_bn: bool = _f(False, "keep BatchNorm statistics fixed (needed for a checkpoint whose BatchNorm "
                                "was folded by the ONNX export)")
    head: str = _f("dual_attention", "attention head", tuple(HEADS))
    attention_reduction: int = _f(1, "dual attention: J and K get C/reduction channels (paper: 1)")
    pooling: str = _f("gem", "global pooling", tuple(POOLINGS))
    gem_p: float = _f(3.0, "initial GeM exponent (learnable)")
    embedding_dim: int = _f(128, "projection size (0: no projection, the backbone's channels)")
    # loss
    loss: str = _f("snca", "loss", tuple(LOSSES))
    sigma: float = _f(0.05, "SNCA temperature")
    ri_lambda: float = _f(0.1, "weight of the rotation term of ri_snca")
    ri_copies: int = _f(2, "ri_snca: rotated copies of each image per batch (of 8 bank slots)")
    contrastive_margin: float = _f(0.7, "contrastive margin tau (L2-normalised embeddings)")
    triplet_margin: float = _f(0.1, "triplet margin (squared distances)")
    softmax_temperature: float = _f(0.05, "norm_softmax temperature")
    pk_images: int = _f(4, "images per class in class-balanced batches (contrastive, triplet)")
    bank_update: str = _f("momentum", "how the memory bank is written", ("momentum", "ema_encoder"))
    bank_momentum: tuple[float, ...] = _f((0.5, 0.8, 0.9), "bank momentum values")
    bank_milestones: tuple[float, ...] = _f((80 / 130, 120 / 130), "fractions of training where the next value starts")
    bank_init: str = _f("features", "initial bank: features of the untrained net, or random", ("features", "random"))
    ema_momentum: float = _f(0.999, "EMA encoder momentum (bank_update ema_encoder)")
    # optimisation
    epochs: int = _f(30, "epochs (0: save the untrained net, e.g. an off-the-shelf baseline)")
    batch_size: int = _f(128, "images per step and process")
    optimizer: str = _f("adamw", "optimiser", ("adamw", "sgd"))
    lr: float = _f(1e-3, "peak learning rate")
    backbone_lr_scale: float = _f(1.0, "learning-rate factor for the backbone (pretrained: < 1)")
    weight_decay: float = _f(1e-4, "weight decay")
    warmup_epochs: float = _f(1.0, "linear warm-up before the cosine decay")
    crop_scale: tuple[float, ...] = _f((0.5, 1.0), "random resized crop area range")
    jitter: float = _f(0.2, "colour jitter strength")
    gsd_range: tuple[float, ...] = _f((1.0, 1.0), "coarser-GSD augmentation: downsample factor range, then back "
                                                  "up (1 1: off)")
    blur_sigma: float = _f(0.0, "Gaussian blur augmentation: largest sigma in pixels (0: off)")
    band_jitter: float = _f(0.0, "per-band gain augmentation, factors in 1 +- this (0: off)")
    haze: float = _f(0.0, "haze augmentation: largest blend weight toward a bright airlight (0: off)")
    degrade_p: float = _f(0.5, "probability of each of gsd/blur/band/haze per image")
    seed: int = _f(0, "seed of initialisation, batches and augmentation")
    # running
    eval_every: int = _f(1, "evaluate test-split mAP every N epochs (0: only at the end)")
    eval_batch_size: int = _f(256, "batch size for embedding during evaluation")
    device: str = _f("auto", "auto, cpu, cuda, cuda:N")
    amp: str = _f("auto", "mixed precision on CUDA", ("auto", "bf16", "fp16", "off"))
    channels_last: bool = _f(True, "channels_last memory format on CUDA")
    resume: bool = _f(False, "continue the run in --out from its last.pt")
    stop_after: int = _f(0, "end this invocation after epoch N (resume later); 0: run to --epochs")
    time_limit: float = _f(0.0, "end this invocation before this many minutes would pass (0: none)")

    @property
    def run_name(self) -> str:
        return self.name or f"rsir-{self.backbone}-{self.head}-{self.loss}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out or Path("runs") / self.run_name)


FIELDS = {f.name: f for f in dataclasses.fields(FitConfig)}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("python -m training.fit", description="Train an rsir embedding model.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default="", help="TOML file of settings (keys as below, with underscores)")
    for f in dataclasses.fields(FitConfig):
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"default": f.default, "help": f.metadata["help"], "dest": f.name}
        if f.metadata["choices"]:
            kwargs["choices"] = f.metadata["choices"]
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif isinstance(f.default, tuple):
            item = _item_type(f)
            parser.add_argument(flag, nargs="*", type=item, **kwargs)
        else:
            parser.add_argument(flag, type=type(f.default), **kwargs)
    return parser


def _item_type(f: dataclasses.Field) -> type:
    return {"tuple[str, ...]": str, "tuple[int, ...]": int, "tuple[float, ...]": float}[str(f.type)]


def read_toml(path: str | Path) -> dict:
    """Settings from a TOML file, checked against the dataclass fields."""
    try:
        import tomllib
    except ImportError as exc:  # Python < 3.11
        raise SystemExit("--config needs Python 3.11 or later (tomllib)") from exc
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise SystemExit(f"{path}: unknown settings {unknown}")
    return data


def write_toml(cfg: FitConfig, path: str | Path) -> None:
    """The recipe as TOML that --config reads back (JSON scalars and arrays are valid TOML); the controls
    of one invocation (resume, stop_after, time_limit) are left at their defaults."""
    recipe = dataclasses.replace(cfg, resume=False, stop_after=0, time_limit=0.0)
    lines = [f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}"
             for k, v in dataclasses.asdict(recipe).items()]
    Path(path).write_text("\n".join(lines) + "\n")


def _coerce(values: dict) -> dict:
    return {k: tuple(v) if isinstance(FIELDS[k].default, tuple) else v for k, v in values.items()}


def parse_config(argv: Sequence[str] | None = None) -> FitConfig:
    """FitConfig from the command line (and the TOML files it points to)."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    defaults: dict = {}
    if args.init:  # the starting network's architecture, below every file and flag (training/init_model.py)
        from .init_model import architecture_defaults, init_meta

        defaults.update(architecture_defaults(init_meta(args.init)))
    if args.resume:
        saved = Path(args.out or FitConfig(**_coerce({k: getattr(args, k) for k in FIELDS})).run_dir) / "config.toml"
        if saved.is_file():
            defaults.update(read_toml(saved))
    if args.config:
        defaults.update(read_toml(args.config))
    if defaults:
        parser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    values = _coerce({k: getattr(args, k) for k in FIELDS})
    if not values["data"]:
        parser.error("--data is required (here or in --config)")
    return FitConfig(**values)
