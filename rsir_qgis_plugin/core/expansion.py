"""The arithmetic of re-ranking by neighbours, on plain arrays: alpha query expansion (αQE) and
database-side augmentation (DBA), after Radenović, Tolias and Chum (TPAMI 2019, "Fine-tuning CNN image
retrieval with no human annotation", section 5).

Both replace a unit vector by the normalised sum of itself (weight 1) and its nearest neighbours, each
weighted by its cosine similarity to the vector raised to the power alpha: close neighbours count, far
ones hardly, and a neighbour with a negative similarity not at all. Which tiles may be neighbours (not
overlapping the query or the tile on the ground) is the callers' business: core/query_expansion.py at
query time, store/dba.py at build time.
"""
from __future__ import annotations

import numpy as np

NEIGHBOURS = 10  # top-n neighbours, for αQE and DBA alike (the measured setting)
ALPHA = 3.0


def alpha_weights(similarities: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """max(similarity, 0) ** alpha, elementwise; NaN (a missing neighbour) weighs 0."""
    similarities = np.nan_to_num(np.asarray(similarities, dtype=np.float64), nan=0.0)
    return np.maximum(similarities, 0.0) ** alpha


def expand_rows(vectors: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray,
                alpha: float = ALPHA) -> np.ndarray:
    """Each row of `vectors` (m, D) as the unit vector of itself + sum_j w_ij neighbours[i, j].

    neighbours: (m, n, D) the rows' neighbour vectors; similarities: (m, n) their cosines to the rows,
    NaN where a row has fewer than n neighbours (weight 0). Returns (m, D) float32.
    """
    weights = alpha_weights(similarities, alpha)  # (m, n)
    summed = vectors.astype(np.float64) + np.einsum("mn,mnd->md", weights, neighbours.astype(np.float64))
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    # A row is a unit vector and its weights are >= 0: the sum cannot vanish unless neighbours point
    # exactly against it, which a weight of 0 (similarity <= 0) already rules out; guard anyway.
    return (summed / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def expand(vector: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray,
           alpha: float = ALPHA) -> np.ndarray:
    """One vector (D,) expanded by its neighbours (n, D) with cosines (n,): the αQE query."""
    if not len(neighbours):
        return np.asarray(vector, dtype=np.float32)
    return expand_rows(vector[None], neighbours[None], np.asarray(similarities)[None], alpha)[0]
