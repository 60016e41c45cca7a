"""Database-side augmentation (DBA): each tile of a new segment gets a search vector, the weighted mean of
its embedding and its nearest neighbours' (core/expansion.py), written beside the segment's own vectors.

    INDEX_DIR/segments/s<n>/search.faiss   the augmented vectors, a FAISS index of the segment's kind
    INDEX_DIR/segments/s<n>/search.f16     their float16 copy, for an ivfpq segment

Neighbours are found with FAISS among the model's embeddings of the whole live index: the new segment's
tiles and every other live segment's (tombstoned tiles, and the tiles of rasters this commit replaces, left
out). A tile that overlaps the tile on the ground is never its neighbour (core/footprints.py): its own
raster's overlapping tiles and other rasters of the same place are shifted copies of it, not evidence.
The model's embeddings stay where they were (vectors.faiss and the shards): export, feedback, repair and
`--no-rerank` use them. The vectors of segments written earlier are not revisited when a segment is
added; compaction computes everything again.

Cost: an exact neighbour search is O(N^2), so within a segment of more than EXACT_KNN_MAX tiles the
neighbours come from an IVF index (the segment's own where it has one) probing KNN_NPROBE lists; other
segments are searched as a query searches them.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BuildCancelled
from ..expansion import ALPHA, NEIGHBOURS, expand_rows
from ..footprints import Footprints, footprints, pairs_overlap
from .segments import SegmentReader
from .shards import Shard
from .vectors import faiss_module, make_faiss_index, write_f16, write_index

EXACT_KNN_MAX = 100_000  # tiles of a segment up to which neighbours are found exactly (FlatIP)
KNN_NPROBE = 16  # lists an IVF neighbour search probes (the queries' own IVF_NPROBE is 32)
FETCH = 48  # candidates per tile: itself, its 8 overlapping neighbours on a half-tile grid, another date's...
MAX_FETCH = 768  # ... and up to this many for tiles whose first candidates were mostly overlapping copies
BATCH = 2048  # tiles augmented at a time: progress, cancellation, memory (BATCH x MAX_FETCH pairs)


def dba_setting() -> dict:
    """The DBA setting this rsir writes (recorded in the manifest; an index with another is rewritten)."""
    return {"neighbours": NEIGHBOURS, "alpha": ALPHA}


@dataclass(frozen=True)
class DbaRun:
    """DBA for the segment being written (a segments.SegmentExtra): the index's other live segments (their
    manifest records, with this commit's tombstones), and the build's progress and cancellation."""

    index_dir: Path
    dim: int
    others: list[dict] = field(default_factory=list)  # set by generation.commit_changes
    progress: Callable[[float, str], None] | None = None
    is_cancelled: Callable[[], bool] | None = None
    setting: dict = field(default_factory=dba_setting)

    def __call__(self, building: Path, ordered: list[tuple[str, Shard]], chunks: list[np.ndarray], index,
                 kind: str) -> tuple[dict, dict]:
        """Compute the segment's search vectors and write them into `building`; (files, manifest fields)."""
        started = time.perf_counter()
        faiss = faiss_module()
        own = _Own(ordered, chunks)
        knn, method = _neighbour_index(faiss, own, index, kind)
        others = [SegmentReader(self.index_dir, record, self.dim) for record in self.others]
        try:
            augmented = np.zeros((own.count, self.dim), np.float32)
            self._report(0, own.count)
            for start in range(0, own.count, BATCH):
                self._check_cancelled()
                rows = np.arange(start, min(start + BATCH, own.count))
                augmented[rows] = self._augment(rows, own, knn, others)
                self._report(rows[-1] + 1, own.count)
            self._check_cancelled()
            against = own.count + sum(reader.live for reader in others)
        finally:
            for reader in others:
                reader.close()
        search = faiss.IndexFlatIP(self.dim) if kind == "flat" else faiss.clone_index(index)
        search.reset()  # an IVF clone keeps the trained lists: the augmented vectors are near the embeddings
        for start in range(0, own.count, 262_144):
            search.add(augmented[start:start + 262_144])
        files = {"search": "search.faiss"}
        size = write_index(search, building / "search.faiss")
        if kind == "ivfpq":
            write_f16(building / "search.f16", [augmented])
            files["search_f16"] = "search.f16"
        return files, {"search_bytes": size, "dba": {**self.setting, "knn": method, "against": int(against),
                                                      "seconds": round(time.perf_counter() - started, 3)}}

    def _report(self, done: int, count: int) -> None:
        if self.progress:  # the build's last percent: DBA follows the embedding, before the commit
            self.progress(98.0 + done / max(count, 1), f"database-side augmentation: {done:,}/{count:,} tiles")

    def _check_cancelled(self) -> None:
        if self.is_cancelled and self.is_cancelled():
            raise BuildCancelled(f"{self.index_dir}: build cancelled; the previous index is unchanged")

    def _augment(self, rows: np.ndarray, own: _Own, knn, others: list[SegmentReader]) -> np.ndarray:
        """The augmented vectors of the new segment's `rows`, fetching more candidates for the rows whose
        first candidates were mostly tiles overlapping them."""
        queries = own.take(rows)
        k = int(self.setting["neighbours"])
        out = np.zeros_like(queries)
        pending, fetch = np.arange(len(rows)), FETCH
        while len(pending):
            vectors, similarities, short = _neighbours(queries[pending], rows[pending], own, knn, others, k, fetch)
            done = ~short if fetch < MAX_FETCH else np.ones(len(pending), bool)
            out[pending[done]] = expand_rows(queries[pending[done]], vectors[done], similarities[done],
                                             float(self.setting["alpha"]))
            pending, fetch = pending[~done], fetch * 4
        return out


class _Own:
    """The new segment's embeddings (chunks in catalog order) and footprints (rasters numbered -1, -2, ...:
    ids no catalog uses, so they never equal another segment's raster ids)."""

    def __init__(self, ordered: list[tuple[str, Shard]], chunks: list[np.ndarray]):
        self.chunks = chunks
        self.ends = np.cumsum([len(c) for c in chunks])
        self.count = int(self.ends[-1]) if len(self.ends) else 0
        rasters = np.concatenate([np.full(len(s.vectors), -number, np.int64)
                                  for number, (_, s) in enumerate(ordered, start=1)] or [np.zeros(0, np.int64)])
        windows = np.concatenate([s.windows.reshape(-1, 4) for _, s in ordered] or [np.zeros((0, 4), np.int64)])
        placement = {-number: (s.record["crs_wkt"], tuple(s.record["transform"]))
                     for number, (_, s) in enumerate(ordered, start=1)}
        self.footprints = footprints(rasters, windows, placement)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows (any order) of the concatenated chunks, float32."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        which = np.searchsorted(self.ends, rows, side="right")
        starts = self.ends - np.array([len(c) for c in self.chunks])
        out = np.zeros((len(rows), self.chunks[0].shape[1]), np.float32)
        for chunk in np.unique(which):
            at = which == chunk
            out[at] = self.chunks[chunk][rows[at] - starts[chunk]]
        return out


def _neighbour_index(faiss, own: _Own, index, kind: str):
    """A FAISS index over the new segment's embeddings for its neighbour search, and how it searches."""
    if own.count <= EXACT_KNN_MAX:
        if kind == "flat":
            return index, "exact"  # the segment's own IndexFlatIP: the same vectors in the same order
        exact = faiss.IndexFlatIP(own.chunks[0].shape[1])
        for chunk in own.chunks:
            exact.add(np.ascontiguousarray(chunk, np.float32))
        return exact, "exact"
    approximate = index if kind != "flat" else make_faiss_index(own.chunks, "ivf")
    approximate.nprobe = min(KNN_NPROBE, approximate.nlist)
    return approximate, f"ivf nprobe {approximate.nprobe}"


def _neighbours(queries: np.ndarray, rows: np.ndarray, own: _Own, knn, others: list[SegmentReader], k: int,
                fetch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query (the new segment's rows): its k best neighbours' vectors (m, k, D) and cosines (m, k),
    NaN where fewer were found, and whether the row found fewer than k among `fetch` candidates per source.

    Candidates come from the new segment and every other segment; those overlapping the query's tile
    are dropped, the rest taken best first.
    """
    sources, ids, scores = [], [], []
    _, local = knn.search(np.ascontiguousarray(queries), min(fetch, own.count))
    exact = np.einsum("mkd,md->mk", own.take(np.maximum(local, 0)).reshape(*local.shape, -1), queries)
    sources.append(np.full(local.shape, -1))
    ids.append(local)
    scores.append(np.where(local >= 0, exact, -np.inf))
    for number, reader in enumerate(others):
        found_scores, found = reader.search(queries, min(fetch, reader.count))
        sources.append(np.full(found.shape, number))
        ids.append(found)
        scores.append(found_scores)
    source, tile, score = (np.concatenate(x, axis=1) for x in (sources, ids, scores))
    order = np.argsort(-score, axis=1, kind="stable")
    source, tile, score = (np.take_along_axis(x, order, 1) for x in (source, tile, score))
    width = source.shape[1]
    candidates = _candidate_footprints(source, tile, own, others)
    overlap = pairs_overlap(own.footprints.take(np.repeat(rows, width)), candidates).reshape(source.shape)
    usable = (tile >= 0) & np.isfinite(score) & ~overlap
    chosen = usable & (np.cumsum(usable, axis=1) <= k)
    found_count = chosen.sum(axis=1)
    vectors = np.zeros((len(queries), k, queries.shape[1]), np.float32)
    similarities = np.full((len(queries), k), np.nan)
    slot = np.cumsum(chosen, axis=1) - 1
    row, col = np.nonzero(chosen)
    similarities[row, slot[row, col]] = score[row, col]
    vectors[row, slot[row, col]] = _vectors(source[row, col], tile[row, col], own, others)
    # Fewer than k with more candidates possibly beyond the fetched ones: worth a wider fetch.
    short = (found_count < k) & (fetch < own.count + sum(reader.count for reader in others))
    return vectors, similarities, short


def _candidate_footprints(source: np.ndarray, tile: np.ndarray, own: _Own,
                          others: list[SegmentReader]) -> Footprints:
    """Footprints of the candidates (flattened, row-major): the new segment's from its shards, other
    segments' from their catalogs (one query per segment for the distinct ids)."""
    source, tile = source.ravel(), tile.ravel()
    n = len(source)
    rasters = np.zeros(n, np.int64)
    windows = np.zeros((n, 4), np.int64)
    quads = np.full((n, 4, 2), np.nan)
    mine = (source == -1) & (tile >= 0)
    picked = own.footprints.take(tile[mine])
    rasters[mine], windows[mine], quads[mine] = picked.rasters, picked.windows, picked.quads
    for number, reader in enumerate(others):
        at = (source == number) & (tile >= 0)
        if not at.any():
            continue
        distinct, back = np.unique(tile[at], return_inverse=True)
        raster_ids, raster_windows = reader.footprint_rows(distinct, contextlib.nullcontext())
        placement = {i: (reader.rasters[i].crs_wkt, reader.rasters[i].transform) for i in np.unique(raster_ids)}
        found = footprints(raster_ids, raster_windows, placement).take(back)
        rasters[at], windows[at], quads[at] = found.rasters, found.windows, found.quads
    rasters[tile < 0] = np.iinfo(np.int64).min  # padding: overlaps nothing
    with np.errstate(invalid="ignore"):
        boxes = np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)
    return Footprints(rasters, windows, quads, boxes)


def _vectors(source: np.ndarray, tile: np.ndarray, own: _Own, others: list[SegmentReader]) -> np.ndarray:
    """The model's embeddings of the chosen neighbours."""
    out = np.zeros((len(source), own.chunks[0].shape[1]), np.float32)
    mine = source == -1
    out[mine] = own.take(tile[mine])
    for number, reader in enumerate(others):
        at = source == number
        if at.any():
            out[at] = reader.vectors(tile[at] - reader.base)
    return out
