"""A fixed, seeded sample of the AID scene dataset (one folder per class) for retrieval mAP."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class LabelledImages:
    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) int, index into classes
    classes: tuple[str, ...]


def aid_sample(root: str | Path, per_class: int = 20, seed: int = 0) -> LabelledImages:
    """`per_class` images from every class folder of `root`, drawn with a seeded shuffle of sorted names."""
    root = Path(root)
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not classes:
        raise FileNotFoundError(f"{root}: no class folders (expected AID layout: one folder per class)")
    rng = random.Random(seed)
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < per_class:
            raise ValueError(f"{root / name}: {len(files)} images, fewer than the {per_class} asked for")
        chosen = rng.sample(files, per_class)
        paths += chosen
        labels += [label] * per_class
    return LabelledImages(paths=tuple(paths), labels=np.asarray(labels), classes=classes)
