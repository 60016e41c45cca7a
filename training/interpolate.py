"""`python -m training.interpolate START.pt TUNED.pt --alpha A --out MIXED.pt`: weight-space interpolation of
a fine-tuned network with the one it started from, (1 - A) * START + A * TUNED (WiSE-FT, Wortsman et al.,
"Robust fine-tuning of zero-shot models", CVPR 2022).

A fine-tune on new augmentations gains on imagery it never saw and loses a little on its own data; the
models between the two ends often keep most of both. Both checkpoints must hold the same architecture and
TUNED must have started from START (`training.fit --init START.pt`), so that their weights lie in one
basin; BatchNorm statistics are interpolated like the weights. The meta is TUNED's, with the mix recorded
and without TUNED's test figures.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from . import checkpoint


def interpolate(start: dict, tuned: dict, alpha: float) -> dict:
    """State dict (1 - alpha) * start + alpha * tuned; integer tensors (BatchNorm counters) are tuned's."""
    if set(start) != set(tuned):
        raise SystemExit(f"the checkpoints hold different tensors: {sorted(set(start) ^ set(tuned))[:5]}")
    mixed = {}
    for key, value in tuned.items():
        if start[key].shape != value.shape:
            raise SystemExit(f"{key}: {tuple(start[key].shape)} against {tuple(value.shape)}")
        mixed[key] = torch.lerp(start[key], value, alpha) if value.is_floating_point() else value.clone()
    return mixed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("start", type=Path, help="the checkpoint the fine-tune started from (--init)")
    parser.add_argument("tuned", type=Path, help="the fine-tuned checkpoint")
    parser.add_argument("--alpha", type=float, required=True, help="0: START, 1: TUNED")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        raise SystemExit(f"--alpha {args.alpha}: choose a value in 0-1")
    start, tuned = checkpoint.load(args.start), checkpoint.load(args.tuned)
    arch_keys = ("backbone", "head", "pooling", "embedding_dim", "input_size", "bands", "projection")
    differ = checkpoint.architecture_differences(start["meta"], {k: tuned["meta"].get(k) for k in arch_keys})
    if differ:
        raise SystemExit(f"another architecture (start, tuned): {differ}")
    init = tuned["meta"].get("training", {}).get("init") or {}
    if init.get("name") != start["meta"].get("name"):
        raise SystemExit(f"{args.tuned} did not start from {args.start} (its init is {init.get('name')!r}, "
                         f"the start is {start['meta'].get('name')!r})")
    # The tuned run's test figures are not the mix's: evaluate the mix (training.evaluate) for its card.
    training = {**tuned["meta"].get("training", {}), "metrics": {}}
    meta = checkpoint.json_safe({**tuned["meta"], "training": training, "interpolation": {
        "alpha": args.alpha, "start": args.start.name, "tuned": args.tuned.name,
        "method": "WiSE-FT weight-space interpolation: (1 - alpha) * start + alpha * tuned"}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save_atomic({"meta": meta, "state_dict": interpolate(start["state_dict"], tuned["state_dict"],
                                                                      args.alpha)}, args.out)
    print(f"{args.out}: {1 - args.alpha:g} x {args.start.name} + {args.alpha:g} x {args.tuned.name}")


if __name__ == "__main__":
    main()
