"""The index's shared IVF-PQ codebook: one coarse quantizer and PQ codebook for every ivfpq segment.

    INDEX_DIR/codebook.faiss   an empty, trained IndexIVFPQ (replaced atomically)

Trained once, on the first ivfpq segment an index writes (a new index, `--force` and a changed
embedding size train it afresh); every later ivfpq segment is encoded with it and records its
sha256 (`codebook` in the segment's manifest record). Segments with the same codebook have
comparable codes in the same inverted lists, so merging them copies codes list by list
(store/merge.py) instead of re-reading float32 vectors and training again. An ivfpq segment of
an rsir before the shared codebook (no `codebook`) is never code-merged: `index compact` rewrites it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import IndexStoreError
from .files import file_sha256
from .vectors import batches, faiss_module, trained_index, write_index

CODEBOOK = "codebook.faiss"


@dataclass(frozen=True)
class Codebook:
    """The trained empty index and the sha256 of its file (what segments encoded with it record)."""

    index: object
    sha256: str

    def empty(self):
        """A fresh, empty copy to fill: the codebook itself is never changed."""
        return faiss_module().clone_index(self.index)

    def filled(self, chunks: Sequence[np.ndarray]):
        """An ivfpq index of these vectors, encoded with the codebook."""
        index = self.empty()
        for batch in batches(chunks):
            index.add(batch)
        return index


def read_codebook(index_dir: Path, dim: int) -> Codebook | None:
    """The index's codebook, or None where it has none (or one of another embedding size)."""
    path = Path(index_dir) / CODEBOOK
    if not path.is_file() or path.is_symlink():
        return None
    faiss = faiss_module()
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as exc:
        raise IndexStoreError(f"{path}: unreadable FAISS codebook ({str(exc).strip()[:200]}); "
                              "delete it and run `rsir index compact` to train a new one") from exc
    if not isinstance(index, faiss.IndexIVFPQ) or index.d != dim or not index.is_trained or index.ntotal:
        return None
    return Codebook(index, file_sha256(path))


def shared_codebook(index_dir: Path, chunks: Sequence[np.ndarray], retrain: bool) -> Codebook:
    """The index's codebook; trained on a sample of `chunks` and written first where there is none
    (or `retrain`: a new index in the folder must not inherit an old index's codebook)."""
    dim = chunks[0].shape[1]
    found = None if retrain else read_codebook(index_dir, dim)
    if found is not None:
        return found
    path = Path(index_dir) / CODEBOOK
    write_index(trained_index(chunks, "ivfpq"), path)  # atomic: a kill leaves the old codebook or the new
    codebook = read_codebook(index_dir, dim)
    assert codebook is not None  # just written
    return codebook
