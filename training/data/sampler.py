"""Epoch batches of training-image indices: random, or class-balanced P x K for in-batch pair losses.

The same generator on every rank gives the same global sequence; each rank takes its share, so DDP
ranks see disjoint batches and a resumed run sees the batches it would have seen.
"""
from __future__ import annotations

import torch


def random_batches(n: int, batch: int, generator: torch.Generator, world: int = 1, rank: int = 0) -> list[torch.Tensor]:
    """A permutation of range(n) cut into global batches of batch * world (the last partial one
    dropped); this rank's slice of each."""
    perm = torch.randperm(n, generator=generator)
    step = batch * world
    return [perm[s + rank * batch:s + (rank + 1) * batch] for s in range(0, n - step + 1, step)]


def pk_batches(labels: torch.Tensor, p: int, k: int, generator: torch.Generator, world: int = 1,
               rank: int = 0) -> list[torch.Tensor]:
    """About n / (p k) batches of p classes x k images; images are drawn per class without replacement
    until a class runs out, then its order is reshuffled (small classes repeat)."""
    classes = labels.unique()
    p = min(p, len(classes))
    members = {int(c): torch.nonzero(labels == c).flatten() for c in classes}
    queues = {c: m[torch.randperm(len(m), generator=generator)].tolist() for c, m in members.items()}
    n_global = len(labels) // (p * k) // world * world
    batches = []
    for b in range(n_global):
        chosen = classes[torch.randperm(len(classes), generator=generator)[:p]].tolist()
        batch = []
        for c in chosen:
            while len(queues[c]) < k:
                queues[c] += members[c][torch.randperm(len(members[c]), generator=generator)].tolist()
            batch += queues[c][:k]
            queues[c] = queues[c][k:]
        if b % world == rank:
            batches.append(torch.tensor(batch))
    return batches
