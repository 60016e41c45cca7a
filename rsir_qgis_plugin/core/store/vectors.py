"""The vectors: a FAISS file per generation (exact IndexFlatIP, or IndexIVFFlat for large indexes).

    INDEX_DIR/vectors-<gen>.faiss
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import IndexStoreError, MissingDependencyError

APPROXIMATE_THRESHOLD = 250_000  # above this many vectors an exact search takes > ~70 ms on 2 cores
# Approximate search is IVF: every build rebuilds the vector index from the shards, and on 2 cores
# IVF builds about 20x faster than HNSW (10^5 x 512: 10 s against 220 s) at similar query latency.
IVF_MAX_LISTS = 4096
IVF_TRAIN_PER_LIST = 64  # k-means training points per list (FAISS warns below 39)
IVF_NPROBE = 32


def faiss_module():
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(["faiss-cpu"], f"import failed: {exc}; pip install faiss-cpu") from exc
    return faiss


def choose_kind(n_vectors: int, approximate: bool | None) -> str:
    if approximate is None:
        approximate = n_vectors > APPROXIMATE_THRESHOLD
    return "ivf" if approximate else "flat"


def ivf_lists(n_vectors: int) -> int:
    """About 4 sqrt(n) inverted lists, each with enough points to train its centroid."""
    return int(max(1, min(IVF_MAX_LISTS, 4 * np.sqrt(n_vectors), n_vectors // 39)))


def make_faiss_index(vectors: np.ndarray, kind: str):
    faiss = faiss_module()
    dim = vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "ivf":
        lists = ivf_lists(len(vectors))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).permutation(len(vectors))[:lists * IVF_TRAIN_PER_LIST]
        index.train(vectors[np.sort(sample)])
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(vectors)
    return index


def serialize(index) -> bytes:
    return faiss_module().serialize_index(index).tobytes()


def read_vectors(path: Path, manifest: dict):
    """The generation's FAISS index, checked against the manifest (file size, count, dimension)."""
    faiss = faiss_module()
    rebuild = "run `index build` to rebuild it"
    if not path.is_file():
        raise IndexStoreError(f"{path}: missing; the index is damaged, {rebuild}")
    expected_size = manifest.get("vectors_bytes")
    if expected_size is not None and path.stat().st_size != expected_size:
        raise IndexStoreError(f"{path}: {path.stat().st_size} bytes where the manifest recorded "
                              f"{expected_size}; the vectors file is damaged, {rebuild}")
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IndexStoreError(f"{path}: unreadable FAISS index ({first_line}); {rebuild}") from exc
    if index.ntotal != manifest["tile_count"] or index.d != manifest["model"]["embedding_dim"]:
        raise IndexStoreError(f"{path}: holds {index.ntotal} {index.d}-d vectors where the manifest records "
                              f"{manifest['tile_count']} {manifest['model']['embedding_dim']}-d; {rebuild}")
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = min(IVF_NPROBE, index.nlist)
        index.make_direct_map()  # reconstruct(id) for stored embeddings (feedback, export)
    return index
