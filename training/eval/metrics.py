"""Retrieval metrics on a boolean relevance matrix rel (Q, M): rel[q, r] says whether the image ranked
r+1 for query q shares its class. Small numpy functions, one job each."""
from __future__ import annotations

import numpy as np


def rank(queries: np.ndarray, database: np.ndarray, self_index: np.ndarray | None = None) -> np.ndarray:
    """(Q, M) database indices by decreasing similarity (inner product of L2-normalised rows); with
    self_index (each query's own database row) that row is dropped from its ranking, leaving (Q, M - 1)."""
    sims = queries @ database.T
    if self_index is None:
        return np.argsort(-sims, axis=1, kind="stable")
    sims[np.arange(len(queries)), self_index] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :-1]


def relevance(order: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """(Q, M) bool: is the r-th result of query q of q's class."""
    return db_labels[order] == query_labels[:, None]


def average_precision(rel: np.ndarray, k: int | None = None) -> np.ndarray:
    """Per-query AP, paper 000 eq. 10-12: AP = (1/T) sum_{i<=Q} P_i rel_i with P_i = NO_i / i, over the
    top Q = k results (all when k is None), T = relevant images among them; 0 when there are none."""
    rel = rel[:, :k] if k else rel
    hits = np.cumsum(rel, axis=1)                                       # NO_i
    precision = hits / np.arange(1, rel.shape[1] + 1)                   # P_i
    found = hits[:, -1]                                                 # T
    return np.where(found > 0, (precision * rel).sum(axis=1) / np.maximum(found, 1), 0.0)


def precision_at(rel: np.ndarray, k: int) -> np.ndarray:
    """Per-query fraction of relevant images among the first k."""
    return rel[:, :k].mean(axis=1)


def nmrr(rel: np.ndarray, n_relevant: np.ndarray, gtm: int) -> np.ndarray:
    """Per-query normalised modified retrieval rank (MPEG-7; paper 003's ANMRR is its mean).

    NG = n_relevant, K = min(4 NG, 2 GTM) with GTM the largest NG over all queries; a relevant image
    ranked beyond K counts as rank 1.25 K; AVR = mean rank of the NG relevant images;
    NMRR = (AVR - 0.5 - NG/2) / (1.25 K - 0.5 - NG/2), 0 for perfect retrieval, 1 for none found.
    """
    ng = n_relevant.astype(np.float64)
    k = np.minimum(4 * ng, 2 * gtm)
    out = np.empty(rel.shape[0])
    for q in range(rel.shape[0]):
        ranks = np.flatnonzero(rel[q]) + 1.0
        ranks = np.where(ranks <= k[q], ranks, 1.25 * k[q])
        penalty = 1.25 * k[q] * (ng[q] - len(ranks))                    # relevant images never retrieved
        avr = (ranks.sum() + penalty) / ng[q]
        out[q] = (avr - 0.5 - ng[q] / 2) / (1.25 * k[q] - 0.5 - ng[q] / 2)
    return out


def interpolated_precision(rel: np.ndarray, n_relevant: np.ndarray, recall_levels: np.ndarray) -> np.ndarray:
    """(Q, L) precision-recall curve points: the best precision at recall >= each level."""
    hits = np.cumsum(rel, axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)
    recall = hits / np.maximum(n_relevant[:, None], 1)
    # Running maximum from the right: the interpolated precision at each rank.
    best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros((rel.shape[0], len(recall_levels)))
    for q in range(rel.shape[0]):
        idx = np.searchsorted(recall[q], recall_levels, side="left")    # first rank reaching each level
        ok = idx < rel.shape[1]
        out[q, ok] = best_after[q, idx[ok]]
    return out
