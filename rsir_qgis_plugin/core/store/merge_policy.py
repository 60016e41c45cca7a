"""The size-tiered merge policy: which segments a build merges after its commit.

A segment's tier is the power of MERGE_FACTOR its live tiles reach above TIER_FLOOR:

    tier 0   fewer than 40,000 live tiles        (TIER_FLOOR * MERGE_FACTOR)
    tier 1   40,000 to 160,000
    tier k   TIER_FLOOR * 4^k to TIER_FLOOR * 4^(k+1)

When MERGE_FACTOR segments fall in one tier they are merged into one (which lands a tier or more
higher), the lowest tier first, until no tier holds MERGE_FACTOR: at most MERGE_FACTOR - 1 segments
a tier, so an index of N tiles keeps O(log N) segments (3 a tier; about 20 at 10^8 tiles) however
many builds added to it, and each tile is rewritten O(log N) times in its life. Segments above
MAX_MERGED_TILES are left as they are (a merge builds its output in memory; `index compact` rewrites
everything), and so are segments whose codes cannot be reused (`mergeable` says which).
"""
from __future__ import annotations

import math
from collections.abc import Callable

MERGE_FACTOR = 4
TIER_FLOOR = 10_000
MAX_MERGED_TILES = 20_000_000  # ivfpq codes and ids in memory: about 40 B a tile, 0.8 GB


def live_tiles(segment: dict) -> int:
    return segment["tiles"] - segment["dead_tiles"]


def tier_of(tiles: int) -> int:
    """The tier of a segment of this many live tiles."""
    if tiles < TIER_FLOOR * MERGE_FACTOR:
        return 0
    return int(math.log(tiles / TIER_FLOOR, MERGE_FACTOR) + 1e-9)


def segment_tiers(manifest: dict) -> dict[int, list[dict]]:
    """tier -> the manifest's segments in it, in manifest order."""
    tiers: dict[int, list[dict]] = {}
    for segment in manifest["segments"]:
        tiers.setdefault(tier_of(live_tiles(segment)), []).append(segment)
    return dict(sorted(tiers.items()))


def next_merge(manifest: dict, mergeable: Callable[[dict], bool]) -> list[str]:
    """Names of the segments to merge next (the lowest tier with MERGE_FACTOR mergeable ones), or []."""
    for segments in segment_tiers(manifest).values():
        chosen = [s for s in segments if mergeable(s) and live_tiles(s) <= MAX_MERGED_TILES]
        if len(chosen) >= MERGE_FACTOR:
            # The smallest first: the merged segment then stays within the memory cap.
            chosen.sort(key=live_tiles)
            group, total = [], 0
            for segment in chosen:
                if group and total + live_tiles(segment) > MAX_MERGED_TILES:
                    break
                group.append(segment["name"])
                total += live_tiles(segment)
            if len(group) >= 2:
                return group
    return []


def describe_tiers(manifest: dict) -> str:
    """One line for `index info`: segments per tier with the tier's tile range."""
    parts = []
    for tier, segments in segment_tiers(manifest).items():
        low = 0 if tier == 0 else TIER_FLOOR * MERGE_FACTOR ** tier
        high = TIER_FLOOR * MERGE_FACTOR ** (tier + 1)
        parts.append(f"tier {tier} ({low:,}-{high:,} tiles): {len(segments)}")
    return (f"segments per size tier (merged when {MERGE_FACTOR} share a tier): "
            + ("; ".join(parts) if parts else "none"))
