"""One set of a segment's vectors, opened for searching: a FAISS file, and for an ivfpq segment the
float16 copy that re-scores its PQ candidates exactly.

A segment holds one or two sets: the model's embeddings (vectors.faiss, vectors.f16: always), and
where the index was built with database-side augmentation the augmented search vectors (search.faiss,
search.f16; store/dba.py). Both are opened and checked alike (sizes, counts, sampled digests).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .integrity import check_norms, check_sample, check_scores
from .vectors import RERANK_FACTOR, open_f16, read_vectors


@dataclass(frozen=True)
class SetKeys:
    """The manifest keys of a set's files: FAISS file, its size and sample digest, float16 copy and its digest."""

    faiss: str
    faiss_bytes: str
    faiss_sample: str
    f16: str
    f16_sample: str


ORIGINAL = SetKeys("vectors", "vectors_bytes", "vectors_sample", "f16", "f16_sample")
AUGMENTED = SetKeys("search", "search_bytes", "search_sample", "search_f16", "search_f16_sample")


class VectorSet:
    """A segment's FAISS index (memory-mapped) and float16 copy of one set of vectors."""

    def __init__(self, index_dir: Path, segment: dict, dim: int, keys: SetKeys):
        self.kind, self.count = segment["kind"], segment["tiles"]
        self.path = Path(index_dir) / segment[keys.faiss]
        self.index = read_vectors(self.path, segment.get(keys.faiss_bytes), self.count, dim)
        check_sample(self.path, segment.get(keys.faiss_sample))
        self.f16_path = Path(index_dir) / segment[keys.f16] if segment.get(keys.f16) else None
        self.f16 = open_f16(self.f16_path, self.count, dim) if self.f16_path else None
        if self.f16 is not None:
            check_sample(self.f16_path, segment.get(keys.f16_sample))
        self._direct_map = False

    def candidates(self, queries: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
        """(nq, wanted) scores and local ids of the best tiles by FAISS, PQ candidates re-scored exactly."""
        fetch = min(self.count, wanted * RERANK_FACTOR) if self.f16 is not None else wanted
        scores, local = self.index.search(queries, fetch)
        if self.f16 is not None:  # re-score the PQ candidates exactly from the float16 vectors
            check_scores(self.path, queries, np.zeros_like(scores), local, self.count)  # ids only
            safe = np.maximum(local, 0)
            exact = np.einsum("qkd,qd->qk", self.f16[safe.ravel()].reshape(*safe.shape, -1).astype(np.float32),
                              queries)
            scores = np.where(local >= 0, exact, -np.inf).astype(np.float32)
            order = np.argsort(-scores, axis=1, kind="stable")
            scores, local = np.take_along_axis(scores, order, 1), np.take_along_axis(local, order, 1)
        check_scores(self.f16_path or self.path, queries, scores, local, self.count)
        return scores, local

    def vectors(self, local: np.ndarray) -> np.ndarray:
        """Stored vectors by local id: exact for flat and ivf, float16-exact for ivfpq."""
        if self.f16 is not None:
            stored = np.asarray(self.f16[local], dtype=np.float32)
        elif not len(local):
            return np.zeros((0, self.index.d), np.float32)
        else:
            if self.kind == "ivf" and not self._direct_map:
                self.index.make_direct_map()
                self._direct_map = True
            stored = self.index.reconstruct_batch(np.ascontiguousarray(local, dtype=np.int64))
        check_norms(self.f16_path or self.path, stored)
        return stored
