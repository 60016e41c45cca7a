"""Metrics of a run: one CSV row per epoch (appended across resumes) and TensorBoard when installed."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


class MetricsLog:
    """Writes on the main process only; `columns` fixes the CSV header, missing values stay empty."""

    def __init__(self, run_dir: Path, columns: Sequence[str], enabled: bool = True):
        self.enabled = enabled
        self.columns = list(columns)
        self.path = run_dir / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        if not self.path.exists():
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional: the CSV has everything
            return
        self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.columns, restval="").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self.tb is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def step(self, name: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(name, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
