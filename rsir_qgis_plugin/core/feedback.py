"""Relevance feedback: rank the index by boxes the analyst marked as good (positive) or bad (negative).

With few labels the query is Rocchio's: the mean of the positive embeddings less half the mean of
the negative ones. Once there are at least two of each, a small L2-regularised logistic regression
is fitted to the labelled embeddings, starting from the Rocchio direction (Newton's method, numpy
only, deterministic); candidates come from FAISS with the Rocchio query and are re-ranked by the
classifier's probability. Feedback is never re-ranked by neighbours (no αQE; an index's DBA search
vectors are not used): everything is scored by the model's embeddings.

A labelled box that is exactly an indexed tile (what marking a hit gives) uses the tile's stored
vector; any other box is read and embedded like a query box.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .embedder import l2_normalize, shared_embedder
from .errors import RasterError, RsirError, SearchCancelled
from .examples import Feedback, LabelledBox  # also importable from here: the documented engine API
from .geometry import crs_from
from .model import ModelInfo
from .params import SearchParams
from .query_box import checked_box, pixel_window
from .query_step import (
    Candidates,
    QueryArea,
    box_window,
    index_reader,
    model_for,
    nearest,
    query_areas,
    read_box,
)
from .ranking import rank
from .results import Scorer, SearchResult
from .store import IndexReader, RasterEntry

ROCCHIO_BETA = 0.5  # weight of the negatives' mean in the Rocchio query
CLASSIFIER_MIN_EXAMPLES = 2  # positives and negatives each, before the classifier replaces Rocchio
CLASSIFIER_L2 = 0.01  # ridge penalty on the weights; the loss is a class-balanced mean over examples
NEWTON_STEPS = 30
CANDIDATES = 4096  # tiles fetched by the Rocchio query for the classifier to re-rank (more if needed)


@dataclass(frozen=True)
class _Place:
    """Where a labelled box lies: its raster (an index's RasterEntry or a RasterSource) and pixel window,
    the indexed tile it is (if it is one), else its pixels."""

    raster: object
    window: tuple[int, int, int, int]
    tile_id: int | None
    pixels: np.ndarray | None

    @property
    def key(self) -> tuple[str, tuple[int, int, int, int]]:
        return self.raster.path, tuple(self.window)


def search_feedback(index_dir: str | Path, feedback: Feedback, params: SearchParams,
                    is_cancelled: Callable[[], bool] | None = None) -> SearchResult:
    """Rank the index by the labelled examples; raises RsirError subclasses with one clear line.

    Hits overlapping a labelled box are left out (unless params.exclude_query_overlap is False),
    labelled tiles always. Hit.score is the cosine similarity to the Rocchio query
    (SearchResult.scoring == "cosine"), or the classifier's probability that the tile is like the
    positives ("probability"); params.min_score applies to that score. Boxes that fall on the same
    pixels of the same raster (a hit marked twice, once from a labels file) count once, with the
    label given last; SearchResult.feedback holds the examples used.
    """
    started = time.perf_counter()
    boxes = feedback.latest().boxes
    if not any(box.positive for box in boxes):
        raise RsirError("relevance feedback needs at least one positive example (a box marked as good)"
                        + (f"; got {len(boxes)} negative example(s) only" if boxes else ""))
    names = _names(boxes)
    boxes = tuple(checked_example(box, name) for box, name in zip(boxes, names))
    reader = index_reader(index_dir)
    model = model_for(reader, params)
    places = _places(reader, model, boxes, names, is_cancelled)
    kept = sorted({place.key: i for i, place in enumerate(places)}.values())  # the last label of a place
    boxes, names, places = [boxes[i] for i in kept], [names[i] for i in kept], [places[i] for i in kept]
    if not any(box.positive for box in boxes):
        raise RsirError("every positive example is marked negative again later (the same tile or pixels); "
                        "relevance feedback needs at least one positive example")
    vectors, provider = _embed(reader, model, places, names, params, is_cancelled)
    positive = np.array([box.positive for box in boxes])
    pos, neg = vectors[positive], vectors[~positive]
    query = rocchio(pos, neg)
    weights, bias = None, 0.0
    if len(pos) >= CLASSIFIER_MIN_EXAMPLES and len(neg) >= CLASSIFIER_MIN_EXAMPLES:
        weights, bias = fit_logistic(pos, neg, prior=query)
        candidates: Candidates = _ClassifierCandidates(reader, query, weights, bias)
        scoring = "probability"
    else:
        # Not re-ranked (SearchParams.rerank does not apply): the labels are the expansion, and αQE on the
        # Rocchio query measured no better over two rounds (docs/results.md, re-ranking).
        candidates = nearest(reader, query)
        scoring = "cosine"
    areas = _areas(places) if params.exclude_query_overlap else []
    skip = frozenset(place.tile_id for place in places if place.tile_id is not None)
    hits, all_excluded = rank(reader, candidates, params, areas, is_cancelled, skip=skip)
    first = places[int(np.flatnonzero(positive)[0])].raster
    return SearchResult(hits=hits, query_polygon=None, query_crs_wkt=first.crs_wkt, query_raster=first.path,
                        provider=provider, seconds=time.perf_counter() - started, all_excluded=all_excluded,
                        scoring=scoring, feedback=Feedback(tuple(boxes)),
                        scorer=Scorer(query=query, weights=weights, bias=bias, areas=tuple(areas)))


def rocchio(positives: np.ndarray, negatives: np.ndarray, beta: float = ROCCHIO_BETA) -> np.ndarray:
    """The unit query mean(positives) - beta * mean(negatives) of (n, D) unit embeddings."""
    query = positives.mean(axis=0)
    if len(negatives):
        query = query - beta * negatives.mean(axis=0)
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm < 1e-6:
        raise RsirError("the positive and negative examples cancel out (the same images marked both ways?); "
                        "mark at least one positive that is not also among the negatives")
    return (query / norm).astype(np.float32)


def fit_logistic(positives: np.ndarray, negatives: np.ndarray, prior: np.ndarray | None = None,
                 l2: float = CLASSIFIER_L2) -> tuple[np.ndarray, float]:
    """Weights (D,) and bias of a logistic regression of (n, D) embeddings, positives 1, negatives 0.

    The loss is the class-balanced mean log-loss plus l2/2 |w - w0|^2 (the bias is not penalised).
    With a `prior` direction (the Rocchio query), w0 = s * prior, s fitted first on the examples'
    similarity to the prior alone; so the classifier starts from Rocchio's ranking and departs from it
    only as far as the labels support (a few negatives among many positives cannot turn it round).
    Without a prior w0 = 0. The optimal w - w0 lies in the span of the examples: Newton's method
    works in an orthonormal basis of that span, an (n+1)-square system instead of a (D+1)-square
    one. Both losses are strictly convex, so the answer is unique and the same on every run.
    """
    examples = np.concatenate([positives, negatives]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    weight = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives))
    start = np.zeros(examples.shape[1])
    if prior is not None:
        similarity = examples @ prior.astype(np.float64)
        scale, _ = _newton(np.stack([similarity, np.ones(len(y))], axis=1), y, weight, np.zeros(len(y)),
                           np.array([l2, 0.0]))
        start = scale * prior.astype(np.float64)
    basis, _ = np.linalg.qr(examples.T)  # (D, r), r = min(n, D)
    features = np.hstack([examples @ basis, np.ones((len(y), 1))])
    penalty = np.append(np.full(basis.shape[1], l2), 0.0)
    theta = _newton(features, y, weight, examples @ start, penalty)
    return (start + basis @ theta[:-1]).astype(np.float32), float(theta[-1])


def _newton(x: np.ndarray, y: np.ndarray, weight: np.ndarray, offset: np.ndarray, penalty: np.ndarray,
            steps: int = NEWTON_STEPS) -> np.ndarray:
    """argmin over theta of sum(weight * logloss(y, x @ theta + offset)) + sum(penalty * theta^2) / 2,
    by Newton steps halved until the loss does not rise."""

    def loss(theta: np.ndarray) -> float:
        z = x @ theta + offset
        return float(weight @ (np.logaddexp(0.0, z) - y * z) + 0.5 * penalty @ theta ** 2)

    theta = np.zeros(x.shape[1])
    current = loss(theta)
    for _ in range(steps):
        p = _sigmoid(x @ theta + offset)
        gradient = x.T @ (weight * (p - y)) + penalty * theta
        hessian = (x.T * (weight * p * (1 - p))) @ x + np.diag(penalty) + 1e-12 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-4:
            candidate = theta - size * step
            value = loss(candidate)
            if value <= current:
                break
            size /= 2
        else:
            break  # no step lowers the loss: at the minimum, up to rounding
        theta, previous, current = candidate, current, value
        if previous - current < 1e-12:
            break
    return theta


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


def example_scores(vectors: np.ndarray, query: np.ndarray, weights: np.ndarray | None, bias: float) -> np.ndarray:
    """Vectors scored as a search by examples scores them, in float64: the cosine with the Rocchio query, or
    the classifier's probability where it has weights (mapping, standing searches and change searches
    score their tiles or change directions with this)."""
    vectors = vectors.astype(np.float64)
    if weights is None:
        return vectors @ query.astype(np.float64)
    return _sigmoid(vectors @ weights.astype(np.float64) + bias)


class _ClassifierCandidates:
    """The n best of the Rocchio query's candidates by classifier probability (a Candidates source).

    The pool is the FAISS top CANDIDATES by the Rocchio query, grown when more are wanted, so the
    classifier scores thousands of tiles rather than the whole index.
    """

    def __init__(self, reader: IndexReader, query: np.ndarray, weights: np.ndarray, bias: float):
        self._reader, self._query, self._weights, self._bias = reader, query, weights, bias
        self._probabilities = np.zeros(0, np.float32)
        self._ids = np.zeros(0, np.int64)

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pool = min(self._reader.size, max(CANDIDATES, 4 * n))
        if pool > len(self._ids):
            _, ids = self._reader.search(self._query, pool)
            probabilities = example_scores(self._reader.vectors(ids.tolist()), self._query, self._weights,
                                           self._bias)
            order = np.argsort(-probabilities, kind="stable")  # ties keep FAISS order: deterministic
            self._probabilities, self._ids = probabilities[order].astype(np.float32), ids[order]
        return self._probabilities[:n], self._ids[:n]


def checked_example(box: LabelledBox, name: str) -> LabelledBox:
    """The box with its numbers, CRS and raster name checked, before any file is read (`name`: "positive 2")."""
    try:
        bbox = checked_box(box.bbox)
        if box.crs:
            crs_from(box.crs)
    except RsirError as exc:
        raise RsirError(f"{name} on {box.raster}: {exc}") from exc
    if not str(box.raster).strip():
        raise RsirError(f"{name}: no raster given for the box {bbox}")
    return LabelledBox(raster=str(box.raster), bbox=bbox, crs=box.crs or None, positive=box.positive)


def _names(boxes: tuple[LabelledBox, ...]) -> list[str]:
    """'positive example 2', 'negative example 1', ... in the order given, for messages."""
    counts = {True: 0, False: 0}
    names = []
    for box in boxes:
        counts[box.positive] += 1
        names.append(f"{box.label} example {counts[box.positive]}")
    return names


def _places(reader: IndexReader, model: ModelInfo, boxes, names: list[str], is_cancelled) -> list[_Place]:
    """Where each box lies; an indexed tile's id for a box that is one, else the box's pixels."""
    places = []
    for box, name in zip(boxes, names):
        if is_cancelled and is_cancelled():
            raise SearchCancelled("search cancelled")
        try:
            entry = _indexed_entry(reader, box.raster)
            if entry is not None:
                # The box's bounds snapped to the pixel grid within 1/100 pixel: a box equal to a tile's
                # bounds within that tolerance (a hit's polygon, reprojected or not) is that tile.
                window = pixel_window(entry, box.bbox, box.crs)
                tile_id = reader.tile_at(entry, window)
                if tile_id is not None:
                    places.append(_Place(raster=entry, window=window, tile_id=tile_id, pixels=None))
                    continue
            source, window = box_window(reader, model, box.raster, box.bbox, box.crs)
            pixels = read_box(source, window, model.contract.input_size, box.bbox)
            places.append(_Place(raster=source, window=window, tile_id=None, pixels=pixels))
        except RasterError as exc:
            raise RasterError(exc.path, f"{exc.problem} ({name})") from exc
    return places


def _embed(reader: IndexReader, model: ModelInfo, places: list[_Place], names: list[str],
           params: SearchParams, is_cancelled) -> tuple[np.ndarray, str]:
    """(n, D) unit embeddings of the places (stored vectors of tiles, the model for other boxes), and
    a line saying where they came from."""
    vectors = np.zeros((len(places), reader.dim), np.float32)
    stored = [i for i, place in enumerate(places) if place.tile_id is not None]
    drawn = [i for i, place in enumerate(places) if place.tile_id is None]
    if stored:
        vectors[stored] = l2_normalize(reader.vectors([places[i].tile_id for i in stored]))
    provider = f"stored vectors of {len(stored)} indexed tile(s)"
    if drawn:
        if is_cancelled and is_cancelled():
            raise SearchCancelled("search cancelled")
        embedder = shared_embedder(model, params.device)
        tiles = np.stack([places[i].pixels for i in drawn])
        vectors[drawn] = (embedder.embed_tta if params.tta else embedder.embed)(tiles)
        for i in drawn:
            if not np.isfinite(vectors[i]).all():
                raise RsirError(f"{names[i]} on {places[i].raster.path}: the model gave a non-finite "
                                "embedding for this box; draw it elsewhere")
        provider = embedder.describe() + (f" and {provider}" if stored else "")
    return vectors, provider


def _areas(places: list[_Place]) -> list[QueryArea]:
    """The query area of each place, for excluding the hits that overlap it, computed raster by raster."""
    by_raster: dict[str, list[int]] = {}
    for i, place in enumerate(places):
        by_raster.setdefault(place.raster.path, []).append(i)
    areas: dict[int, QueryArea] = {}
    for numbers in by_raster.values():
        raster = places[numbers[0]].raster
        areas.update(zip(numbers, query_areas(raster, [places[i].window for i in numbers])))
    return [areas[i] for i in range(len(places))]


def _indexed_entry(reader: IndexReader, raster: str) -> RasterEntry | None:
    """The index's entry for a raster path (as given, absolute, or with links resolved), if indexed."""
    given = os.path.abspath(os.path.expanduser(str(raster)))
    names = {str(raster), given, os.path.realpath(given)}
    return next((entry for entry in reader.rasters.values() if entry.path in names), None)
