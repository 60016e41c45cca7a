"""Pairs of dates: which before raster is compared with which after raster.

The before rasters must be in the index: their indexed tiles are the places compared, with the index's
model, tiling, bands and TTA. An after raster need not be indexed, nor share the before raster's grid,
CRS or resolution (core/pair_places.py reads it on each place's ground footprint). Every before raster
must overlap at least one after raster on the ground; an after raster that overlaps no before raster is
noted and left out.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .build_plan import shard_key_of
from .errors import RasterError, RsirError
from .geometry import boxes_intersect, crs_from, crs_name, ground_overlaps, ground_quads
from .model import ModelInfo
from .query_step import query_raster_path
from .raster import RasterSource, describe
from .store import IndexReader, RasterEntry
from .tiling import window_bounds


@dataclass(frozen=True)
class Pair:
    """A before raster (indexed: its tiles are the places) and an after raster of the same ground."""

    before: RasterEntry
    after: RasterSource  # fed with the bands it was indexed with, else the before raster's, else RGB
    after_entry: RasterEntry | None  # the after raster's own index entry, when it is indexed too


@dataclass(frozen=True)
class PairPlan:
    pairs: tuple[Pair, ...]
    notes: tuple[str, ...]  # after rasters left out (no overlap with any before raster)


def plan_pairs(reader: IndexReader, model: ModelInfo, before: Sequence[str | Path],
               after: Sequence[str | Path]) -> PairPlan:
    """Each before raster with every after raster overlapping it; one line naming the rasters otherwise."""
    if not before or not after:
        raise RsirError("a comparison of dates needs at least one before and one after raster")
    befores = list(dict.fromkeys(query_raster_path(path) for path in before))
    afters = list(dict.fromkeys(query_raster_path(path) for path in after))
    both = sorted(set(befores) & set(afters))
    if both:
        raise RsirError(f"{both[0]}: given as both a before and an after raster; give each date its own raster")
    entries = [_before_entry(reader, path) for path in befores]
    sources: dict[tuple[str, tuple[int, ...] | None], RasterSource] = {}
    pairs, used = [], set()
    for entry in entries:
        matched = []
        for path in afters:
            after_entry = indexed_entry(reader, path)
            bands = _after_bands(entry, after_entry)
            if (path, bands) not in sources:
                sources[path, bands] = describe(path, bands, model.contract.bands)
            source = sources[path, bands]
            if footprints_overlap(entry, source):
                matched.append(Pair(before=entry, after=source, after_entry=after_entry))
        if not matched:
            raise RsirError(_no_overlap(entry, [sources[key] for key in sources if key[0] in afters]))
        pairs += matched
        used |= {pair.after.path for pair in matched}
    notes = tuple(f"{path}: overlaps none of the before rasters; left out" for path in afters if path not in used)
    return PairPlan(pairs=tuple(pairs), notes=notes)


def indexed_entry(reader: IndexReader, resolved: str) -> RasterEntry | None:
    """The index's entry for a raster's resolved path, if it is indexed."""
    return next((entry for entry in reader.rasters.values() if entry.path == resolved), None)


def indexed_tta(entry: RasterEntry, model: ModelInfo) -> bool:
    """Whether the raster's tiles were embedded with rotation TTA (its shard key says: core/build_plan)."""
    return entry.shard == shard_key_of(entry.path, entry.size, entry.mtime_ns, entry.tiling, entry.bands,
                                       model.sha256, True)


def footprints_overlap(a, b) -> bool:
    """Whether two rasters (RasterEntry or RasterSource) share ground: on longitude/latitude where both have
    a CRS that reaches it, else by bounds where both have the same (or no) CRS; never otherwise."""
    whole_a, whole_b = (0, 0, a.width, a.height), (0, 0, b.width, b.height)
    quads_a = ground_quads(a.crs_wkt, a.transform, [whole_a])
    quads_b = ground_quads(b.crs_wkt, b.transform, [whole_b])
    if quads_a is not None and quads_b is not None:
        return ground_overlaps(quads_a[0], quads_b[0])
    if quads_a is None and quads_b is None and _same_crs(a.crs_wkt, b.crs_wkt):
        return boxes_intersect(window_bounds(a.transform, whole_a), window_bounds(b.transform, whole_b))
    return False


def _same_crs(a: str, b: str) -> bool:
    if not a or not b:
        return not a and not b
    return crs_from(a) == crs_from(b)


def _before_entry(reader: IndexReader, path: str) -> RasterEntry:
    entry = indexed_entry(reader, path)
    if entry is None:
        raise RasterError(path, f"not in the index {reader.index_dir}: a before raster's indexed tiles are the "
                                "places compared; add it to the index first (index build)")
    if entry.tile_count == 0:
        raise RasterError(path, "has no indexed tiles (all nodata or empty), so no place to compare")
    return entry


def _after_bands(before: RasterEntry, after_entry: RasterEntry | None) -> tuple[int, ...] | None:
    """Feed the after raster as it was indexed; else as the before raster's tiling asked; else by colour."""
    if after_entry is not None:
        return tuple(after_entry.bands)
    bands = before.tiling.get("bands")
    return tuple(bands) if bands else None


def _no_overlap(entry: RasterEntry, afters: list[RasterSource]) -> str:
    """The one line refusing a before raster that no after raster overlaps."""
    where = ", ".join(f"{a.path} ({crs_name(a.crs_wkt)})" for a in afters[:3])
    more = f" and {len(afters) - 3} more" if len(afters) > 3 else ""
    return (f"{entry.path} ({crs_name(entry.crs_wkt)}) and {where}{more} do not overlap on the ground: give "
            "before and after rasters of the same place")
