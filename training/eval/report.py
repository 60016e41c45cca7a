"""All retrieval metrics for one (queries, database) pair, computed over query chunks to bound memory."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import average_precision, interpolated_precision, nmrr, precision_at, rank, relevance

KS = (5, 10, 20, 50, 100)
RECALL_LEVELS = np.linspace(0.0, 1.0, 11)


def retrieval_report(queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray,
                     db_labels: np.ndarray, classes: Sequence[str], same_set: bool = False,
                     ks: Sequence[int] = KS, chunk: int = 512) -> dict:
    """mAP (paper 000 eq. 9-12, every query ranks the whole database), mAP@k, P@k, ANMRR, per-class AP
    and the 11-point interpolated precision-recall curve. same_set: the queries are the database
    (test vs test), so each query's own image is left out of its ranking."""
    n_relevant = np.bincount(db_labels, minlength=len(classes))[query_labels] - (1 if same_set else 0)
    gtm = int(n_relevant.max())
    ap, ap_at, p_at, nm, pr = [], {k: [] for k in ks}, {k: [] for k in ks}, [], []
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        self_index = np.arange(start, stop) if same_set else None
        rel = relevance(rank(queries[start:stop], database, self_index), query_labels[start:stop], db_labels)
        ap.append(average_precision(rel))
        for k in ks:
            ap_at[k].append(average_precision(rel, k))
            p_at[k].append(precision_at(rel, k))
        nm.append(nmrr(rel, n_relevant[start:stop], gtm))
        pr.append(interpolated_precision(rel, n_relevant[start:stop], RECALL_LEVELS))
    ap = np.concatenate(ap)
    return {
        "map": float(ap.mean()),
        "map_at": {str(k): float(np.concatenate(v).mean()) for k, v in ap_at.items()},
        "precision_at": {str(k): float(np.concatenate(v).mean()) for k, v in p_at.items()},
        "anmrr": float(np.concatenate(nm).mean()),
        "per_class_ap": {name: float(ap[query_labels == c].mean())
                         for c, name in enumerate(classes) if (query_labels == c).any()},
        "pr_curve": {"recall": [float(r) for r in RECALL_LEVELS],
                     "precision": [float(p) for p in np.concatenate(pr).mean(axis=0)]},
        "queries": int(len(queries)), "database": int(len(database)),
    }


def mean_average_precision(embeddings: np.ndarray, labels: np.ndarray, chunk: int = 512) -> float:
    """Test-vs-test mAP alone (eq. 9-12), for evaluation during training."""
    ap = []
    for start in range(0, len(embeddings), chunk):
        stop = min(start + chunk, len(embeddings))
        order = rank(embeddings[start:stop], embeddings, np.arange(start, stop))
        ap.append(average_precision(relevance(order, labels[start:stop], labels)))
    return float(np.concatenate(ap).mean())
