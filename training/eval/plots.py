"""The precision-recall curve figure (matplotlib, imported only here)."""
from __future__ import annotations

from pathlib import Path


def plot_pr_curves(curves: dict[str, dict], path: str | Path, title: str) -> Path:
    """One line per named curve ({"recall": [...], "precision": [...]}) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, curve in curves.items():
        ax.plot(curve["recall"], curve["precision"], marker="o", markersize=3, label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
