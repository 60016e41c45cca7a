"""Schedules as pure functions of the training position."""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up from ~0 to 1 over `warmup` steps, then a cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def bank_momentum(epoch: int, epochs: int, values: Sequence[float], milestones: Sequence[float]) -> float:
    """The memory-bank momentum for `epoch`: values[i] from fraction milestones[i-1] of training on.

    Kang's code uses 0.5, then 0.8 from epoch 80 and 0.9 from epoch 120 of 130: values (0.5, 0.8, 0.9)
    with milestones (80/130, 120/130).
    """
    if len(values) != len(milestones) + 1:
        raise ValueError(f"bank momentum: {len(values)} values need {len(values) - 1} milestones, "
                         f"got {len(milestones)}")
    return float(values[bisect.bisect_right(list(milestones), epoch / max(1, epochs))])
