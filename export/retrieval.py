"""Retrieval mAP on labelled embeddings: every item queries all the others."""
from __future__ import annotations

import numpy as np


def average_precisions(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP of each item as a query against the rest, ranked by cosine similarity (ties: stable order)."""
    vectors = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)  # the query itself ranks last and is dropped below
    order = np.argsort(-scores, axis=1, kind="stable")[:, :-1]
    relevant = labels[order] == labels[:, None]  # (N, N-1), in rank order
    hits = np.cumsum(relevant, axis=1)
    precision_at_hit = hits / np.arange(1, relevant.shape[1] + 1)
    counts = relevant.sum(axis=1)
    return np.where(counts > 0, (precision_at_hit * relevant).sum(axis=1) / np.maximum(counts, 1), 0.0)


def mean_average_precision(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Mean over queries of average precision (queries with no other item of their class count 0)."""
    return float(average_precisions(embeddings, labels).mean())
