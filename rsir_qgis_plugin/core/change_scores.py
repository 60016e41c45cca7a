"""How much, and how, a place changed between two dates: plain functions of its two unit embeddings."""
from __future__ import annotations

import numpy as np

from .store import faiss_module

MIN_CHANGE = 1e-3  # |after - before| of unit vectors below this is no change (float32 noise is ~1e-5)
REFERENCE_PLACES = 20_000  # places the neighbours of "unusual" are looked for among (a fixed sample beyond)


def change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """1 - cosine of each place's before and after embeddings (n, D): 0 the same, up to 2."""
    return 1.0 - np.einsum("ij,ij->i", before.astype(np.float64), after.astype(np.float64))


def change_vectors(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(n, D) unit directions of after - before; zero rows where the dates are the same (below MIN_CHANGE)."""
    diff = after.astype(np.float64) - before
    norms = np.linalg.norm(diff, axis=1, keepdims=True)
    return np.where(norms > MIN_CHANGE, diff / np.maximum(norms, MIN_CHANGE), 0.0).astype(np.float32)


def like_change(similarity: np.ndarray, before: np.ndarray, after: np.ndarray, size: float) -> np.ndarray:
    """A similarity of change directions (cosine or probability) damped where a place changed less than the
    examples did (|after - before| below `size`, their mean): in proportion, so a place that barely changed
    (a pixel of the change leaking in through the resampling at its edge, a shift of colours) is not a
    change like the examples however well its tiny change points their way."""
    sizes = np.linalg.norm(after.astype(np.float64) - before, axis=1)
    return similarity * np.minimum(1.0, sizes / max(size, MIN_CHANGE))


def unusual_change(before: np.ndarray, after: np.ndarray, neighbours: int = 10,
                   reference: int = REFERENCE_PLACES) -> np.ndarray:
    """1 - cosine between each place's after embedding and the mean after embedding of the `neighbours` places
    most like it at the before date (itself left out).

    Two dates differ everywhere by sensor, season and crop stage: every tan field of 2009 is a green one in
    2020. What places that looked alike went through is the expected change; a place scores by how far it
    departed from it. Neighbours are found among all places, or a fixed sample of `reference` of them.
    Fewer places than neighbours + 1: plain change().
    """
    n = len(before)
    if n <= neighbours:
        return change(before, after)
    pool = np.arange(n) if n <= reference else np.sort(np.random.default_rng(0).choice(n, reference, replace=False))
    faiss = faiss_module()
    index = faiss.IndexFlatIP(before.shape[1])
    index.add(np.ascontiguousarray(before[pool], np.float32))
    _, found = index.search(np.ascontiguousarray(before, np.float32), neighbours + 1)
    found = pool[found]  # place numbers
    others = found != np.arange(n)[:, None]
    # Each row's first `neighbours` numbers other than the place itself (it is found first, or not at all).
    keep = np.cumsum(others, axis=1) <= neighbours
    rows = np.where(others & keep, found, -1)
    picked = np.sort(rows, axis=1)[:, -neighbours:]
    expected = after[picked].astype(np.float64).mean(axis=1)
    expected /= np.maximum(np.linalg.norm(expected, axis=1, keepdims=True), 1e-12)
    return 1.0 - np.einsum("ij,ij->i", after.astype(np.float64), expected)
