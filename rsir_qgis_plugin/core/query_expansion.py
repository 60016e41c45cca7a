"""Re-ranking at query time: alpha query expansion (αQE) over the index's search vectors.

A first search finds the query's top NEIGHBOURS tiles as a hit list shows them (ranking.rank: tiles
overlapping the query box and labelled tiles left out, repeats of one place thinned by the default NMS),
so the expansion is never the query area itself or one place counted twice. The query becomes the normalised
sum of itself and their vectors weighted by similarity^ALPHA (core/expansion.py), and a second search
ranks the index by it. Where the index was built with DBA both searches use its augmented vectors
(store/dba.py). A query taken at several ground scales (core/scales.py) is expanded scale by scale, each
by the best tiles of its own rasters (expanded_scales). SearchParams.rerank False searches the model's
embeddings with the query as embedded: the ranking of rsir before re-ranking, exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Callable

import numpy as np

from .expansion import ALPHA, NEIGHBOURS, expand
from .params import SearchParams
from .query_step import Candidates, QueryArea, ScaleQuery, nearest
from .ranking import TileFootprints, by_scale, rank
from .results import Hit
from .store import IndexReader

# NMS of the expansion's neighbours: the default's, whatever the user chose for the hits, so one place
# counts once in the expansion and the ranking does not change with the hits' NMS setting.
EXPANSION_NMS_IOU = 0.3


def reranked(reader: IndexReader, query: np.ndarray, params: SearchParams, areas: Sequence[QueryArea],
             is_cancelled: Callable[[], bool] | None, skip: frozenset[int] = frozenset(),
             footprints: TileFootprints | None = None) -> Candidates:
    """The candidates to rank for `query`: by the expanded query (params.rerank), else by the query alone.
    `footprints`: the final rank()'s, so the tiles both rankings meet are placed on the ground once."""
    if not params.rerank:
        return nearest(reader, query)
    return augmented_nearest(reader, expanded_query(reader, query, params, areas, is_cancelled, skip,
                                                    footprints=footprints))


def expanded_scales(reader: IndexReader, parts: Sequence[ScaleQuery], params: SearchParams,
                    areas: Sequence[QueryArea], is_cancelled: Callable[[], bool] | None,
                    footprints: TileFootprints | None = None) -> list[ScaleQuery]:
    """Each scale's query expanded by αQE among its own rasters' tiles (params.rerank), else as embedded;
    rank them with ranking.by_scale(reader, parts, augmented=params.rerank) (and the same `footprints`)."""
    if not params.rerank:
        return list(parts)
    if len(parts) == 1:
        return [replace(parts[0], vector=expanded_query(reader, parts[0].vector, params, areas, is_cancelled,
                                                        footprints=footprints))]
    return [replace(part, vector=expanded_query(reader, part.vector, params, areas, is_cancelled,
                                                candidates=by_scale(reader, parts, True, only=i),
                                                footprints=footprints))
            for i, part in enumerate(parts)]


def expanded_query(reader: IndexReader, query: np.ndarray, params: SearchParams, areas: Sequence[QueryArea],
                   is_cancelled: Callable[[], bool] | None, skip: frozenset[int] = frozenset(),
                   candidates: Candidates | None = None, footprints: TileFootprints | None = None) -> np.ndarray:
    """The αQE query: `query` and its expansion neighbours' search vectors, weighted by their similarity to
    it raised to ALPHA. The query itself where no neighbour is left. `candidates`: where the neighbours
    are found (default: the whole index by the query's search vectors)."""
    hits = expansion_neighbours(reader, query, params, areas, is_cancelled, skip, candidates, footprints)
    if not hits:
        return query
    neighbours = reader.vectors([hit.tile_id for hit in hits], augmented=True)
    return expand(query, neighbours, np.array([hit.score for hit in hits]), ALPHA)


def expansion_neighbours(reader: IndexReader, query: np.ndarray, params: SearchParams,
                         areas: Sequence[QueryArea], is_cancelled: Callable[[], bool] | None,
                         skip: frozenset[int] = frozenset(), candidates: Candidates | None = None,
                         footprints: TileFootprints | None = None) -> list[Hit]:
    """The query's top NEIGHBOURS tiles by its search vectors (or `candidates`), as rank() keeps them: none
    overlapping the query areas or in `skip`, one per place (NMS at EXPANSION_NMS_IOU), whatever
    params.min_score."""
    first = replace(params, k=NEIGHBOURS, min_score=None, nms_iou=EXPANSION_NMS_IOU)
    return rank(reader, candidates or augmented_nearest(reader, query), first, areas, is_cancelled, skip,
                footprints)[0]


def augmented_nearest(reader: IndexReader, query: np.ndarray) -> Candidates:
    """The index's tiles by cosine similarity to `query`, over its DBA search vectors where it has them."""
    return lambda n: reader.search(query, n, augmented=True)
