"""Merging segments: the live tiles of a few segments rewritten as one, each merge committed like a build.

A merge reads what the segments already hold, never the float32 shards: the catalog rows of their
live rasters (tombstoned rasters are dropped here) and their vectors, then writes one segment of them
(segments.write_segment: a folder filled under a temporary name, renamed in) and commits it
(generation.commit_merge: the manifest, written last). The merged segment's vectors:

    flat, ivf   the segments' exact vectors concatenated (flat and ivf store them exactly), then
                indexed as a build would (an ivf output trains its lists on them)
    ivfpq       the PQ codes copied list by list into an empty copy of the index's shared codebook
                (store/codebook.py), ids renumbered, and the float16 copies concatenated; segments
                without codes (flat, ivf) are encoded with the codebook

A kill at any step leaves either the previous state or the merged one, every live tile searchable;
the next build goes on merging (merge_tiers is re-run after every build).
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IndexStoreError
from ..model import ModelInfo
from .catalog import catalog_error, raster_tile_ranges
from .codebook import Codebook, read_codebook
from .generation import commit_merge, next_segment_number
from .merge_policy import MAX_MERGED_TILES, live_tiles, next_merge
from .segments import SegmentReader, write_segment
from .shards import Shard
from .vectors import APPROXIMATE_THRESHOLD, choose_kind, faiss_module, write_f16, write_index

MERGED_IVF_MIN = 40_000  # a merged segment of tier 1 or above (merge_policy.py) may be IVF: merged_kind

_RASTER_ROW = ("id, path, size, mtime_ns, crs_wkt, width, height, transform, bands, stretch, tiling, tile_px, "
               "stride_px, shard, skipped")
_TILE_ROW = "col, row, width, height, xmin, ymin, xmax, ymax, lon_min, lat_min, lon_max, lat_max"


@dataclass
class MergeReport:
    """What merging did after a build: one line a merge, and why segments were left as they are."""

    merges: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        parts = [f"merged {'; '.join(self.merges)} in {self.seconds:.1f} s"] if self.merges else []
        return "; ".join(parts + self.notes)


@dataclass(frozen=True)
class Piece:
    """One live raster of a merged segment: where its tiles are (local ids) and its rows as a Shard."""

    reader: SegmentReader
    local_first: int
    shard: Shard


def merge_tiers(index_dir: Path, manifest: dict, model: ModelInfo, approximate: bool | None = None,
                progress: Callable[[float, str], None] | None = None,
                is_cancelled: Callable[[], bool] | None = None) -> tuple[dict, MergeReport]:
    """Merge segments by the size-tiered policy (merge_policy.py) until no tier holds enough; the
    manifest after the last merge committed, and what was done. The caller holds the writer lock."""
    started, report = time.perf_counter(), MergeReport()
    index_dir = Path(index_dir)
    if manifest.get("dba") or any(s.get("search") for s in manifest["segments"]):
        report.notes.append("segments not merged: their DBA search vectors depend on each segment's neighbours "
                            "(`index compact` rewrites them as one)")
        return manifest, report
    codebook = read_codebook(index_dir, manifest["model"]["embedding_dim"])

    def mergeable(segment: dict) -> bool:
        return segment["kind"] != "ivfpq" or (codebook is not None and segment.get("codebook") == codebook.sha256)

    foreign = [s["name"] for s in manifest["segments"] if not mergeable(s)]
    if foreign:
        report.notes.append(f"{len(foreign)} ivfpq segment(s) encoded without the index's shared codebook are "
                            "not merged (`index compact` rewrites them with one)")
    while group := next_merge(manifest, mergeable):
        if is_cancelled and is_cancelled():
            report.notes.append("merging cancelled (the next build goes on)")
            break
        if progress:
            progress(99.0, f"merging {len(group)} segments")
        manifest, line = merge_segments(index_dir, manifest, group, model, approximate, codebook)
        report.merges.append(line)
    report.seconds = time.perf_counter() - started
    return manifest, report


def merge_segments(index_dir: Path, manifest: dict, names: list[str], model: ModelInfo,
                   approximate: bool | None = None, codebook: Codebook | None = None) -> tuple[dict, str]:
    """Merge the named segments into one and commit; (the new manifest, a line saying what was merged)."""
    index_dir = Path(index_dir)
    dim = manifest["model"]["embedding_dim"]
    inputs = [s for s in manifest["segments"] if s["name"] in names]
    total = sum(live_tiles(s) for s in inputs)
    if total > MAX_MERGED_TILES:
        raise IndexStoreError(f"{index_dir}: merging {total} tiles at once exceeds {MAX_MERGED_TILES}")
    kind = merged_kind(manifest, total, approximate)
    readers: list[SegmentReader] = []
    try:
        for segment in inputs:
            readers.append(SegmentReader(index_dir, segment, dim))
        pieces = {key: piece for reader in readers for key, piece in live_pieces(reader, dim).items()}
        if kind == "ivfpq":
            codebook = codebook or read_codebook(index_dir, dim)
            if codebook is None:  # the merged segment crosses the compression threshold: train it here
                writer = None
                fill_vectors(pieces)
            else:
                writer = CodeMerge(codebook, pieces)
        else:
            writer = None
            fill_vectors(pieces)
        added = write_segment(index_dir, next_segment_number(index_dir, manifest),
                              {key: piece.shard for key, piece in pieces.items()}, model, kind != "flat",
                              manifest["next_tile"], manifest["next_raster"], vectors=writer)
    finally:
        for reader in readers:
            reader.close()
    line = f"{'+'.join(names)} -> {added['name']} ({added['tiles']} tiles, {added['kind']})"
    return commit_merge(index_dir, manifest, names, added), line


def merged_kind(manifest: dict, tiles: int, approximate: bool | None) -> str:
    """The kind of a merged segment of `tiles` live tiles: as --exact/--approximate asks, else as the
    index's segments imply, else by size, except that from MERGED_IVF_MIN tiles it is IVF in an index of
    more than APPROXIMATE_THRESHOLD live tiles. Such an index is searched approximately anyway (its large
    segments are IVF), while an exact segment is scanned whole by every query: after 30 nightly updates
    of a 10^6-tile index, the flat segments merged from them held 300,000 tiles and most of a query's time
    (benchmarks/segments_query.py, docs/scale.md)."""
    if approximate is None:
        approximate = implied_approximate(manifest)
    if (approximate is None and tiles >= MERGED_IVF_MIN
            and sum(live_tiles(s) for s in manifest["segments"]) > APPROXIMATE_THRESHOLD):
        approximate = True
    return choose_kind(tiles, approximate)


def implied_approximate(manifest: dict) -> bool | None:
    """The --exact/--approximate the index was built with, as its segments show it (None: by size)."""
    if any(s["kind"] == "flat" and s["tiles"] > APPROXIMATE_THRESHOLD for s in manifest["segments"]):
        return False
    if any(s["kind"] != "flat" and s["tiles"] <= APPROXIMATE_THRESHOLD for s in manifest["segments"]):
        return True
    return None


def live_pieces(reader: SegmentReader, dim: int) -> dict[str, Piece]:
    """shard key -> Piece for each live raster of the segment (rows copied from its catalog)."""
    path, base = reader.catalog_path, reader.base
    pieces = {}
    try:
        ranges = raster_tile_ranges(reader.db, path)  # first_tile where the catalog has it (not format 2)
        rasters = reader.db.execute(f"SELECT {_RASTER_ROW} FROM rasters ORDER BY id").fetchall()
        for row in rasters:
            if row[0] not in reader.rasters:  # tombstoned: dropped by the merge
                continue
            tiles = np.array(reader.db.execute(f"SELECT {_TILE_ROW} FROM tiles WHERE raster_id = ? ORDER BY id",
                                               (row[0],)).fetchall(), dtype=np.float64).reshape(-1, 12)
            count = len(tiles)
            first, recorded = ranges.get(row[0], (base, 0))
            first = first if count else base
            if count != recorded or not base <= first <= first + count <= base + reader.count:
                raise ValueError(f"raster {row[0]} lists {count} tiles where its row says {recorded}")
            record = {"path": row[1], "size": row[2], "mtime_ns": row[3], "crs_wkt": row[4], "width": row[5],
                      "height": row[6], "transform": json.loads(row[7]), "bands": json.loads(row[8]),
                      "stretch": json.loads(row[9]), "tiling": json.loads(row[10]), "tile_px": row[11],
                      "stride_px": row[12], "skipped": row[14]}
            # Vectors are filled in later (fill_vectors) or never (CodeMerge): only their count is used so far.
            placeholder = np.broadcast_to(np.zeros(1, np.float32), (count, dim))
            shard = Shard(vectors=placeholder, windows=tiles[:, :4].astype(np.int64), bounds=tiles[:, 4:8],
                          bounds_4326=tiles[:, 8:12], record=record)
            pieces[row[13]] = Piece(reader, first - base, shard)
    except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
        raise catalog_error(path, exc) from exc
    return pieces


def fill_vectors(pieces: dict[str, Piece]) -> None:
    """Each piece's stored vectors (exact for flat and ivf, float16-exact for ivfpq) into its shard."""
    for piece in pieces.values():
        n = len(piece.shard.vectors)
        piece.shard.vectors = piece.reader.vectors(np.arange(piece.local_first, piece.local_first + n))


@dataclass
class CodeMerge:
    """A segments.VectorWriter for an ivfpq merge: codes copied from segments with the same codebook."""

    codebook: Codebook
    pieces: dict[str, Piece]

    def __call__(self, folder: Path, ordered: list[tuple[str, Shard]]) -> tuple[str, object, dict]:
        index = self.codebook.empty()
        new_ids: dict[int, np.ndarray] = {}  # per merged segment (by id()): old local id -> new one, -1 dropped
        start = 0
        for key, shard in ordered:
            piece, n = self.pieces[key], len(shard.vectors)
            ids = new_ids.setdefault(id(piece.reader), np.full(piece.reader.count, -1, np.int64))
            ids[piece.local_first:piece.local_first + n] = np.arange(start, start + n)
            start += n
        for reader in {id(p.reader): p.reader for p in self.pieces.values()}.values():
            ids = new_ids.get(id(reader))
            if ids is None:
                continue
            if reader.segment.get("codebook") == self.codebook.sha256:
                copy_codes(reader.original.index, index, ids)
            else:  # flat or ivf: exact vectors, encoded with the codebook
                local = np.flatnonzero(ids >= 0)
                index.add_with_ids(np.ascontiguousarray(reader.vectors(local), np.float32), ids[local])
        if index.ntotal != start:
            raise IndexStoreError(f"{folder}: the merged codes number {index.ntotal}, not {start}")
        write_index(index, folder / "vectors.faiss")
        write_f16(folder / "vectors.f16", (self.pieces[key].reader.vectors(
            np.arange(self.pieces[key].local_first, self.pieces[key].local_first + len(shard.vectors)))
            for key, shard in ordered))
        return "ivfpq", index, {"codebook": self.codebook.sha256}


def copy_codes(source, target, new_ids: np.ndarray) -> None:
    """Append the source IVF-PQ index's codes to the target's inverted lists (same codebook), list by list,
    with ids mapped through `new_ids` (old id -> new id; -1: dropped)."""
    faiss = faiss_module()
    lists, into = faiss.extract_index_ivf(source).invlists, target.invlists
    if lists.nlist != into.nlist or lists.code_size != into.code_size:
        raise IndexStoreError("segments of different codebooks cannot share codes")
    size, added = lists.code_size, 0
    for number in range(lists.nlist):
        n = lists.list_size(number)
        if not n:
            continue
        ids = faiss.rev_swig_ptr(lists.get_ids(number), n).copy()
        codes = faiss.rev_swig_ptr(lists.get_codes(number), n * size).copy().reshape(n, size)
        mapped = new_ids[ids]
        keep = mapped >= 0
        if keep.any():
            kept_ids, kept_codes = np.ascontiguousarray(mapped[keep]), np.ascontiguousarray(codes[keep])
            into.add_entries(number, len(kept_ids), faiss.swig_ptr(kept_ids), faiss.swig_ptr(kept_codes))
            added += len(kept_ids)
    target.ntotal += added

