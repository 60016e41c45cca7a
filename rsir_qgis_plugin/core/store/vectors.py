"""A segment's vectors: a FAISS file, and for compressed segments a float16 copy for exact re-ranking.

    flat   exact IndexFlatIP                          up to APPROXIMATE_THRESHOLD vectors
    ivf    IndexIVFFlat                               up to COMPRESS_THRESHOLD (or --approximate)
    ivfpq  IndexIVFPQ (32 bytes a vector at 128-d),   above COMPRESS_THRESHOLD: candidates from the PQ
           + vectors.f16 (float16, memory-mapped)     codes are re-scored exactly from float16 vectors

IVF files are opened memory-mapped (faiss IO_FLAG_MMAP): a 10^8-tile index opens in seconds and
its inverted lists are paged in by the OS as queries touch them.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import IndexStoreError, MissingDependencyError

APPROXIMATE_THRESHOLD = 250_000  # above this many vectors an exact search takes > ~70 ms on 2 cores
COMPRESS_THRESHOLD = 2_000_000  # above this, float32 inverted lists (512 B a vector at 128-d) cost too much RAM
# IVF builds about 20x faster than HNSW on 2 cores (10^5 x 512: 10 s against 220 s) at similar latency.
IVF_MAX_LISTS = 4096
IVF_TRAIN_PER_LIST = 64  # k-means training points per list (FAISS warns below 39)
IVF_TRAIN_MAX = 262_144  # k-means sample cap: training time, not accuracy, is what grows past it
IVF_NPROBE = 32
PQ_BYTES_PER_DIM = 0.25  # 128-d -> 32 one-byte sub-quantizers
# ivfpq: more lists probed and PQ candidates fetched per wanted hit, then scored exactly from
# float16. Measured at 10^6 tiles: recall@10 0.96 (PQ codes alone: 0.42), 0.5 ms a query.
PQ_NPROBE = 64
RERANK_FACTOR = 20
ADD_BATCH = 262_144


def faiss_module():
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(["faiss-cpu"], f"import failed: {exc}; pip install faiss-cpu") from exc
    return faiss


def choose_kind(n_vectors: int, approximate: bool | None) -> str:
    """flat below the thresholds; `approximate` True forces an IVF kind, False forces exact."""
    if approximate is False:
        return "flat"
    if n_vectors > COMPRESS_THRESHOLD:
        return "ivfpq"
    if approximate or n_vectors > APPROXIMATE_THRESHOLD:
        return "ivf"
    return "flat"


def ivf_lists(n_vectors: int) -> int:
    """About 4 sqrt(n) inverted lists, each with enough points to train its centroid."""
    return int(max(1, min(IVF_MAX_LISTS, 4 * np.sqrt(n_vectors), n_vectors // 39)))


def pq_subquantizers(dim: int) -> int:
    """Sub-quantizers for PQ: dim/4 one-byte codes, a divisor of dim."""
    m = max(1, int(dim * PQ_BYTES_PER_DIM))
    while dim % m:
        m -= 1
    return m


def make_faiss_index(vectors: np.ndarray | Sequence[np.ndarray], kind: str):
    """A FAISS index of the vectors of the given kind, trained on a sample, filled in batches.

    `vectors` is one (n, D) float32 array or a sequence of them (a segment's shards, in order),
    so a segment of 10^7 tiles is never copied into one array.
    """
    chunks = [vectors] if isinstance(vectors, np.ndarray) else list(vectors)
    index = trained_index(chunks, kind)
    for batch in batches(chunks):
        index.add(batch)
    return index


def trained_index(chunks: Sequence[np.ndarray], kind: str):
    """An empty FAISS index of the given kind, its IVF lists (and PQ codebook) trained on a sample of the chunks."""
    faiss = faiss_module()
    n, dim = sum(len(c) for c in chunks), chunks[0].shape[1]
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    lists = ivf_lists(n)
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivfpq":
        index = faiss.IndexIVFPQ(quantizer, dim, lists, pq_subquantizers(dim), 8, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample_size = min(n, lists * IVF_TRAIN_PER_LIST, IVF_TRAIN_MAX)
    index.train(_rows(chunks, np.sort(np.random.default_rng(0).choice(n, sample_size, replace=False))))
    return index


def batches(chunks: Sequence[np.ndarray], size: int = ADD_BATCH) -> Iterator[np.ndarray]:
    """Contiguous float32 batches of at most `size` rows over the chunks, in order."""
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield np.ascontiguousarray(chunk[start:start + size], dtype=np.float32)


def _rows(chunks: Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The given (sorted) global rows of the chunks as one float32 array."""
    ends = np.cumsum([len(c) for c in chunks])
    which = np.searchsorted(ends, rows, side="right")
    starts = ends - [len(c) for c in chunks]
    return np.concatenate([chunks[i][rows[which == i] - starts[i]] for i in np.unique(which)]).astype(np.float32)


def write_index(index, path: Path) -> int:
    """Write a FAISS index atomically; its size in bytes."""
    from ..atomic import atomic_path

    faiss = faiss_module()
    with atomic_path(path) as tmp:
        # Through Python's file: a full disk is an OSError (ENOSPC), where FAISS's own file writer
        # raises a RuntimeError and prints a "close error" line on stderr from its destructor.
        with open(tmp, "wb") as handle:
            faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))
        size = tmp.stat().st_size
    return size


def read_vectors(path: Path, expected_bytes: int | None, count: int, dim: int):
    """A segment's FAISS index, checked against what the manifest recorded (file size, count, dimension)."""
    faiss = faiss_module()
    rebuild = "run `index build` to rebuild it"
    if not path.is_file():
        raise IndexStoreError(f"{path}: missing; the index is damaged, {rebuild}")
    if expected_bytes is not None and path.stat().st_size != expected_bytes:
        raise IndexStoreError(f"{path}: {path.stat().st_size} bytes where the manifest recorded "
                              f"{expected_bytes}; the vectors file is damaged, {rebuild}")
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except (RuntimeError, MemoryError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IndexStoreError(f"{path}: unreadable FAISS index ({first_line}); {rebuild}") from exc
    if index.ntotal != count or index.d != dim:
        raise IndexStoreError(f"{path}: holds {index.ntotal} {index.d}-d vectors where the manifest records "
                              f"{count} {dim}-d; {rebuild}")
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = min(PQ_NPROBE if isinstance(index, faiss.IndexIVFPQ) else IVF_NPROBE, index.nlist)
    return index


def write_f16(path: Path, chunks: Sequence[np.ndarray]) -> None:
    """The float16 copy of a compressed segment's vectors, as a raw (n, D) array."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for batch in batches(chunks):
            handle.write(batch.astype(np.float16).tobytes())


def open_f16(path: Path, count: int, dim: int) -> np.ndarray:
    expected = count * dim * 2
    if not path.is_file() or path.stat().st_size != expected:
        raise IndexStoreError(f"{path}: missing or not {expected} bytes; the index is damaged, "
                              "run `index build` to rebuild it")
    vectors = np.memmap(path, dtype=np.float16, mode="r", shape=(count, dim))
    if hasattr(vectors, "_mmap") and hasattr(mmap, "MADV_RANDOM") and vectors._mmap is not None:
        vectors._mmap.madvise(mmap.MADV_RANDOM)  # re-ranking reads scattered rows: no read-ahead
    return vectors
