"""The places of a pair of dates and both dates' embeddings.

A place is an indexed tile of the before raster; its before embedding is the index's. The after raster is
read on the place's ground footprint (its corners and edge midpoints taken to the after raster's pixels,
the envelope rounded to whole pixels) and resampled to the model input, then
embedded with the index's model and TTA. Where the after raster is itself indexed with a tile on exactly
that footprint, the tile's stored embedding is used instead. The after embeddings are kept in the index
folder (core/pair_store.py), so the next question about the pair reads and embeds nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .change_pairs import Pair, indexed_entry, indexed_tta
from .change_results import PairCounts
from .embedder import Embedder, finite_rows, l2_normalize
from .errors import IndexStoreError, RasterError, RsirError, SearchCancelled
from .geometry import crs_from
from .model import ModelInfo
from .pair_store import (
    NODATA,
    OK,
    OUTSIDE,
    PAIR_DIR,
    PairStoreError,
    StoredPair,
    load_pair,
    pair_key,
    pair_name,
    stored_pair_files,
)
from .pair_store import save_pair as store_pair
from .pipeline import prefetch
from .query_box import PIXEL_SNAP
from .raster import describe, open_dataset
from .store import IndexReader, RasterEntry
from .tiling import read_tiles

Progress = Callable[[float, str], None]
# Where each place's footprint is sampled: its corners and edge midpoints (enough for a tile-sized box
# between two projections; the envelope of these points is read).
_FOOTPRINT = np.array([[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1], [0.5, 1], [0, 1], [0, 0.5]])


@dataclass
class PairPlaces:
    """The places of one pair compared at both dates (rows in the before raster's tile order)."""

    pair: Pair
    tile_ids: np.ndarray  # (m,) int64: the places' tile ids in the index
    before: np.ndarray  # (m, D) float32 unit embeddings of the before date (the index's)
    after: np.ndarray  # (m, D) float32 unit embeddings of the after date
    after_windows: np.ndarray  # (m, 4) int64: where each place was read on the after raster
    counts: PairCounts
    key: str = ""  # the pair's key (core/pair_store.pair_key): its rasters, model, TTA and coverage


def raster_tiles(reader: IndexReader, entry: RasterEntry) -> tuple[np.ndarray, np.ndarray]:
    """The tile ids (n,) and windows (n, 4) of an indexed raster (its tiles have consecutive ids)."""
    firsts = reader.first_tile_ids()
    for tile in reader.tiles(firsts):
        if tile.raster.id == entry.id:
            ids = np.arange(tile.id, tile.id + entry.tile_count, dtype=np.int64)
            tiles = reader.tiles(ids.tolist())
            if any(t.raster.id != entry.id for t in tiles):
                raise IndexStoreError(f"{reader.index_dir}: the tiles of {entry.path} are not where its catalog "
                                      "row says; run `index repair`")
            return ids, np.array([t.window for t in tiles], dtype=np.int64).reshape(-1, 4)
    return np.zeros(0, np.int64), np.zeros((0, 4), np.int64)


def pair_places(reader: IndexReader, model: ModelInfo, pair: Pair, min_coverage: float, batch_size: int,
                embedder: Callable[[], Embedder], progress: Progress | None = None,
                is_cancelled: Callable[[], bool] | None = None) -> tuple[PairPlaces, list[str]]:
    """Both dates' embeddings of a pair's places: stored ones when current, else computed and stored.

    `embedder()` gives the model's session, asked for only when something is to be embedded. Also
    returns notes for the user (a pair file that could not be written or was damaged).
    """
    ids, windows = raster_tiles(reader, pair.before)
    tta = indexed_tta(pair.before, model)
    key = pair_key(*pair_identity(pair), model.sha256, tta, min_coverage)
    path = reader.index_dir / PAIR_DIR / pair_name(pair.before.path, pair.after.path)
    notes: list[str] = []
    stored = None
    if path.exists():
        try:
            stored = load_pair(path, reader.dim)
        except PairStoreError as exc:
            notes.append(f"{exc}; embedding the pair again")
        if stored is not None and (stored.record["key"] != key or not np.array_equal(stored.windows, windows)):
            stored = None  # a file of the pair's previous state (a changed raster, model or tiling): replaced
    from_store = stored is not None
    if stored is None:
        stored = _compute(reader, model, pair, ids, windows, tta, min_coverage, batch_size, embedder, progress,
                          is_cancelled)
        stored.record["key"] = key
        # A read-only or full index folder, or a link in place of INDEX/pairs: the answer stands, it is just
        # not kept.
        try:
            store_pair(reader.index_dir, stored)
        except (RsirError, PairStoreError) as exc:
            notes.append(f"the pair's embeddings could not be kept for next time ({exc})")
    return _places(reader, pair, ids, stored, from_store), notes


def other_stored_places(reader: IndexReader, model: ModelInfo,
                        given: list[PairPlaces]) -> tuple[list[PairPlaces], list[str]]:
    """The places of the index folder's other stored pairs that are still current (their rasters unchanged,
    the before raster still indexed alike), and a note for each one left out. Nothing is read or embedded
    but the after rasters' headers."""
    taken = {pair_name(p.pair.before.path, p.pair.after.path) for p in given}
    found, notes = [], []
    for path in stored_pair_files(reader.index_dir):
        if path.name in taken:
            continue
        try:
            stored = load_pair(path, reader.dim)
            places = _current_places(reader, model, stored)
        except (PairStoreError, RasterError) as exc:
            notes.append(f"stored pair {path.name} left out: {exc}")
            continue
        if places is None:
            notes.append(f"stored pair {stored.record['before']['path']} -> {stored.record['after']['path']} is out "
                         "of date (a raster or the index changed since); compare the pair again to include it")
        else:
            found.append(places)
    return found, notes


def _current_places(reader: IndexReader, model: ModelInfo, stored: StoredPair) -> PairPlaces | None:
    """A stored pair's places, or None when its rasters or the index no longer give its key."""
    record = stored.record
    entry = indexed_entry(reader, record["before"]["path"])
    if entry is None:
        return None
    after = describe(record["after"]["path"], tuple(record["after"]["bands"]), model.contract.bands)
    pair = Pair(before=entry, after=after, after_entry=indexed_entry(reader, after.path))
    key = pair_key(*pair_identity(pair), model.sha256, indexed_tta(entry, model), record["min_coverage"])
    ids, windows = raster_tiles(reader, entry)
    if key != record["key"] or not np.array_equal(stored.windows, windows):
        return None
    return _places(reader, pair, ids, stored, from_store=True)


def _places(reader: IndexReader, pair: Pair, ids: np.ndarray, stored: StoredPair, from_store: bool) -> PairPlaces:
    """The places compared (OK at the after date) with both dates' embeddings, the before date's the index's."""
    ok = stored.state == OK
    return PairPlaces(pair=pair, tile_ids=ids[ok], before=l2_normalize(reader.vectors(ids[ok])),
                      after=stored.vectors, after_windows=stored.after_windows[ok],
                      counts=_counts(pair, stored, from_store), key=str(stored.record["key"]))


def pair_identity(pair: Pair) -> tuple[dict, dict]:
    """The before and after records of a pair's key and file (core/pair_store.py)."""
    before, after = pair.before, pair.after.fingerprint
    return ({"path": before.path, "size": before.size, "mtime_ns": before.mtime_ns, "shard": before.shard},
            {"path": after.path, "size": after.size, "mtime_ns": after.mtime_ns, "bands": list(pair.after.bands)})


def after_windows(before: RasterEntry, after, windows: np.ndarray,
                  min_coverage: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each before window lies on the after raster (a RasterSource or RasterEntry).

    Returns windows (n, 4) int64 rounded to the nearest pixel edges and clipped to the raster, states (OK or
    OUTSIDE: less than min_coverage of the footprint on the raster), and whether each window is exactly
    the footprint (on the after raster's pixel grid within PIXEL_SNAP, wholly on the raster).
    """
    n = len(windows)
    span = windows.astype(np.float64)
    cols = span[:, :1] + _FOOTPRINT[:, 0] * span[:, 2:3]
    rows = span[:, 1:2] + _FOOTPRINT[:, 1] * span[:, 3:4]
    a, b, c, d, e, f = before.transform[:6]
    xs, ys = a * cols + b * rows + c, d * cols + e * rows + f
    xs, ys = _to_crs(before.crs_wkt, after.crs_wkt, xs, ys)
    from affine import Affine

    inverse = ~Affine(*after.transform[:6])
    px = inverse.a * xs + inverse.b * ys + inverse.c
    py = inverse.d * xs + inverse.e * ys + inverse.f
    with np.errstate(invalid="ignore"):
        c0, c1, r0, r1 = px.min(1), px.max(1), py.min(1), py.max(1)
        full = (c1 - c0) * (r1 - r0)
        clipped = ((np.clip(c1, 0, after.width) - np.clip(c0, 0, after.width))
                   * (np.clip(r1, 0, after.height) - np.clip(r0, 0, after.height)))
        coverage = np.where(full > 0, clipped / np.where(full > 0, full, 1), 0.0)
    finite = np.isfinite(coverage) & np.isfinite(px).all(1) & np.isfinite(py).all(1)
    coverage = np.where(finite, coverage, 0.0)
    out = np.zeros((n, 4), np.int64)
    if finite.any():
        # Rounded to the nearest pixel edge, not out as a query box is: a place read 64 px wide on an after
        # grid offset by 0.2 px stays 64 px (within half a pixel of its footprint), not 65 (1.5 % larger).
        col0, col1 = (np.floor(np.clip(v[finite], 0, after.width) + 0.5) for v in (c0, c1))
        row0, row1 = (np.floor(np.clip(v[finite], 0, after.height) + 0.5) for v in (r0, r1))
        out[finite] = np.stack([col0, row0, col1 - col0, row1 - row0], axis=1).astype(np.int64)
    state = np.where((coverage >= min_coverage) & (out[:, 2] >= 1) & (out[:, 3] >= 1), OK, OUTSIDE).astype(np.uint8)
    out[state == OUTSIDE] = 0
    with np.errstate(invalid="ignore"):
        on_grid = np.all([np.abs(v - np.round(v)) < PIXEL_SNAP for v in (c0, c1, r0, r1)], axis=0)
    return out, state, (state == OK) & on_grid & (coverage > 1 - 1e-9)


def _to_crs(src_wkt: str, dst_wkt: str, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points from one CRS to another (as they are when the CRSs are equal or either is missing); NaN where
    PROJ cannot place a point."""
    if not src_wkt or not dst_wkt:
        return xs, ys
    src, dst = crs_from(src_wkt), crs_from(dst_wkt)
    if src == dst:
        return xs, ys
    from rasterio.warp import transform

    shape = xs.shape
    try:
        x, y = transform(src, dst, xs.ravel().tolist(), ys.ravel().tolist())
    except Exception:  # noqa: BLE001 - a point outside the projection's domain fails the whole call (CPLE_*)
        x, y = np.full(xs.size, np.nan), np.full(ys.size, np.nan)
    return np.asarray(x, np.float64).reshape(shape), np.asarray(y, np.float64).reshape(shape)


def _compute(reader: IndexReader, model: ModelInfo, pair: Pair, ids: np.ndarray, windows: np.ndarray, tta: bool,
             min_coverage: float, batch_size: int, embedder: Callable[[], Embedder], progress: Progress | None,
             is_cancelled: Callable[[], bool] | None) -> StoredPair:
    """Read and embed (or reuse) the after date on every place; nothing is written here."""
    wins, state, exact = after_windows(pair.before, pair.after, windows, min_coverage)
    vectors = np.zeros((len(ids), reader.dim), np.float32)
    reused = _reuse_indexed(reader, model, pair, wins, exact, tta, vectors)
    todo = np.flatnonzero((state == OK) & ~reused)
    if len(todo):
        session = embedder()
        embed = session.embed_tta if tta else session.embed
        min_valid = float(pair.before.tiling.get("min_valid_fraction", 0.5))
        done = 0
        for numbers, valid, tiles in _batches(pair, wins, todo, session, min_valid, batch_size):
            if is_cancelled and is_cancelled():
                raise SearchCancelled("comparison of dates cancelled; nothing was stored")
            state[numbers[~valid]] = NODATA
            if tiles is not None:
                kept = numbers[valid]
                embedded = embed(tiles)
                finite = finite_rows(embedded)
                vectors[kept[finite]] = embedded[finite]
                state[kept[~finite]] = NODATA  # a model that gives NaN there: no embedding to compare
            done += len(numbers)
            if progress:
                progress(100.0 * done / len(todo), f"{pair.after.path}: after date of {done}/{len(todo)} places")
    ok = state == OK
    record = {"format": 1, "key": "", "model_sha256": model.sha256, "tta": tta, "min_coverage": min_coverage,
              "embedded": int(len(todo) - (state[todo] != OK).sum()), "reused": int(reused.sum())}
    record["before"], record["after"] = pair_identity(pair)
    return StoredPair(windows=windows.astype(np.int64), after_windows=wins, state=state,
                      vectors=np.ascontiguousarray(vectors[ok]), record=record)


def _reuse_indexed(reader: IndexReader, model: ModelInfo, pair: Pair, wins: np.ndarray, exact: np.ndarray,
                   tta: bool, vectors: np.ndarray) -> np.ndarray:
    """Fill `vectors` with the after raster's indexed embeddings where a place is exactly one of its tiles
    (embedded alike: same TTA); returns which places were filled."""
    reused = np.zeros(len(wins), bool)
    entry = pair.after_entry
    if entry is None or not exact.any() or indexed_tta(entry, model) != tta:
        return reused
    after_ids, after_wins = raster_tiles(reader, entry)
    by_window = {tuple(w): int(i) for i, w in zip(after_ids.tolist(), after_wins.tolist())}
    places = [i for i in np.flatnonzero(exact) if tuple(wins[i].tolist()) in by_window]
    if places:
        found = [by_window[tuple(wins[i].tolist())] for i in places]
        vectors[places] = l2_normalize(reader.vectors(found))
        reused[places] = True
    return reused


def _batches(pair: Pair, wins: np.ndarray, todo: np.ndarray, session: Embedder, min_valid: float,
             batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(place numbers, which were valid (not nodata or empty), the valid ones' tiles preprocessed for the
    model or None) in batches, read and preprocessed ahead in a thread (core/pipeline)."""
    def batch(numbers: list[int], tiles: list[np.ndarray | None]):
        valid = np.array([tile is not None for tile in tiles])
        kept = [tile for tile in tiles if tile is not None]
        return np.array(numbers, np.int64), valid, session.preprocess(np.stack(kept)) if kept else None

    def produce():
        windows = [tuple(int(v) for v in wins[i]) for i in todo]
        numbers, tiles = [], []
        with open_dataset(pair.after.path) as dataset:
            for number, (_, tile) in zip(todo.tolist(), read_tiles(dataset, pair.after, windows,
                                                                  session.input_size, min_valid)):
                numbers.append(number)
                tiles.append(tile)
                if len(numbers) == batch_size:
                    yield batch(numbers, tiles)
                    numbers, tiles = [], []
        if numbers:
            yield batch(numbers, tiles)

    batches = prefetch(produce)
    try:
        yield from batches
    finally:
        batches.close()


def _counts(pair: Pair, stored: StoredPair, from_store: bool) -> PairCounts:
    record = stored.record
    return PairCounts(before=pair.before.path, after=pair.after.path, places=len(stored.state),
                      compared=int((stored.state == OK).sum()), nodata_before=int(pair.before.skipped),
                      nodata_after=int((stored.state == NODATA).sum()),
                      outside=int((stored.state == OUTSIDE).sum()),
                      embedded=0 if from_store else int(record["embedded"]),
                      reused=0 if from_store else int(record["reused"]), stored=from_store)
