"""The papers' protocol: a stratified 80/20 train/test split per class, seeded and written next to the run.

Each class is shuffled with its own generator seeded from (seed, class name), so a class's split does
not change when other classes are added or left out.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .folder import SceneFolder

SPLIT_FORMAT = 1


@dataclass(frozen=True)
class Split:
    seed: int
    test_fraction: float
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]  # (path relative to the dataset root, class index)
    test: tuple[tuple[str, int], ...]

    def describe(self) -> dict:
        """What a model card says about the split."""
        return {"seed": self.seed, "test_fraction": self.test_fraction, "classes": list(self.classes),
                "n_train": len(self.train), "n_test": len(self.test)}


def _class_generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))


def stratified_split(folder: SceneFolder, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """round(test_fraction * n) images of every class go to test (at least 1 of 2+), the rest to train."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    train, test = [], []
    for label, name in enumerate(folder.classes):
        members = [p for p, member_label in zip(folder.paths, folder.labels) if member_label == label]
        n = len(members)
        n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
        order = torch.randperm(n, generator=_class_generator(seed, name)).tolist()
        test += [(members[i], label) for i in sorted(order[:n_test])]
        train += [(members[i], label) for i in sorted(order[n_test:])]
    return Split(seed, test_fraction, folder.classes, tuple(train), tuple(test))


def subsample_train(split: Split, per_class: int, seed: int = 0) -> Split:
    """The same test set with at most `per_class` training images of each class (a seeded choice), for
    budget runs and learning curves that must stay comparable with full-data runs."""
    if per_class <= 0:
        return split
    train = []
    for label, name in enumerate(split.classes):
        members = [item for item in split.train if item[1] == label]
        order = torch.randperm(len(members), generator=_class_generator(seed, f"train:{name}")).tolist()
        train += sorted(members[i] for i in order[:per_class])
    return Split(split.seed, split.test_fraction, split.classes, tuple(train), split.test)


def write_split(split: Split, path: str | Path) -> None:
    payload = {"format": SPLIT_FORMAT, "seed": split.seed, "test_fraction": split.test_fraction,
               "classes": list(split.classes), "train": [list(t) for t in split.train],
               "test": [list(t) for t in split.test]}
    Path(path).write_text(json.dumps(payload, indent=1))


def read_split(path: str | Path) -> Split:
    data = json.loads(Path(path).read_text())
    if data.get("format") != SPLIT_FORMAT:
        raise ValueError(f"{path}: not an rsir split file (format {data.get('format')!r})")
    return Split(int(data["seed"]), float(data["test_fraction"]), tuple(data["classes"]),
                 tuple((p, int(label)) for p, label in data["train"]),
                 tuple((p, int(label)) for p, label in data["test"]))
