"""Searching through time: rank the places of pairs of dates by how much they changed (hot spots), or by
how much their change is like the analyst's examples (search by change).

Entry points (what the CLI, the QGIS tasks, the Processing algorithms and standing searches call):

    change_hotspots(index_dir, before, after, params, progress=None, is_cancelled=None) -> ChangeResult
    search_change(index_dir, before, after, examples, params, progress=None, is_cancelled=None) -> ChangeResult
    rank_by_scorer(reader, model, places, scorer, params, is_cancelled=None) -> ChangeResult  (standing searches)

A place's change is 1 - cosine(before, after) of its two embeddings; its change vector is after - before,
normalised (zero where the two dates look the same to the model). Ranking, overlap exclusion and
non-maximum suppression on the ground are core/ranking.py's, as for every search.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np

from .change_examples import checked_examples, example_changes
from .change_pairs import plan_pairs
from .change_params import ChangeParams
from .change_results import ChangeHit, ChangeResult, ChangeScorer
from .change_scores import change, change_vectors, like_change, unusual_change
from .embedder import Embedder, shared_embedder
from .examples import Feedback, LabelledBox
from .feedback import example_scores, fit_logistic, rocchio
from .model import ModelInfo
from .pair_places import PairPlaces, other_stored_places, pair_places
from .query_step import QueryArea, index_reader, model_for
from .ranking import rank
from .results import Hit
from .store import IndexReader

Progress = Callable[[float, str], None]


def change_hotspots(index_dir: str | Path, before: Sequence[str | Path], after: Sequence[str | Path],
                    params: ChangeParams, progress: Progress | None = None,
                    is_cancelled: Callable[[], bool] | None = None) -> ChangeResult:
    """The places of the pairs ranked by how much they changed, thinned on the ground (NMS).

    params.hotspots "change": 1 - cosine(before, after); "unusual": 1 - cosine between the after date and
    the after date of the places most like it before (core/change_scores.unusual_change).

    progress(percent 0-100, message); raises SearchCancelled when is_cancelled() turns true (nothing
    half-written: a pair's embeddings are stored whole or not at all).
    """
    started = time.perf_counter()
    run = _Run.start(index_dir, before, after, params, progress, is_cancelled)
    before_vectors = np.concatenate([p.before for p in run.places])
    after_vectors = np.concatenate([p.after for p in run.places])
    if params.hotspots == "unusual":
        scores = unusual_change(before_vectors, after_vectors, params.neighbours)
    else:
        scores = change(before_vectors, after_vectors)
    ends = np.cumsum([len(p.tile_ids) for p in run.places])[:-1]
    hits, all_excluded = run.rank(np.split(scores, ends), [])
    return run.result(hits, params.hotspots, started, all_excluded=all_excluded)


def search_change(index_dir: str | Path, before: Sequence[str | Path], after: Sequence[str | Path],
                  examples: Feedback | Sequence[LabelledBox], params: ChangeParams,
                  progress: Progress | None = None, is_cancelled: Callable[[], bool] | None = None) -> ChangeResult:
    """The places of the pairs (and, with params.other_pairs, of the index's other stored pairs) ranked by
    how like the examples' their change is.

    Each example is a box (LabelledBox: raster, bbox, crs, positive) on a before or an after raster of
    the pairs given, read at both dates. With fewer than 2 positive or 2 negative examples the score is
    the cosine between a place's change vector and Rocchio's query (mean of the positives' change vectors
    less half the negatives'); else a logistic regression's probability (core/feedback.fit_logistic).
    Either is damped for a place that changed less than the examples (core/change_scores.like_change).
    Places overlapping an example are left out (params.exclude_example_overlap).
    """
    started = time.perf_counter()
    feedback = checked_examples(examples)
    run = _Run.start(index_dir, before, after, params, progress, is_cancelled)
    changes, sizes, areas, rings = example_changes(run.reader, run.model, run.given, feedback, run.embed)
    if params.other_pairs:
        others, notes = other_stored_places(run.reader, run.model, run.given)
        run.places += others
        run.notes += notes
    positive = np.array([box.positive for box in feedback.boxes])
    pos, neg = changes[positive], changes[~positive]
    query = rocchio(pos, neg)
    weights, bias = fit_logistic(pos, neg, prior=query) if len(pos) >= 2 and len(neg) >= 2 else (None, 0.0)
    scorer = ChangeScorer(query=np.asarray(query, np.float32), weights=weights, bias=float(bias),
                          size=float(sizes[positive].mean()),
                          areas=tuple(areas) if params.exclude_example_overlap else (),
                          pairs=tuple(p.key for p in run.places))
    hits, all_excluded = run.rank(change_likeness(run.places, scorer), list(scorer.areas))
    return run.result(hits, scorer_kind(scorer), started, all_excluded=all_excluded, examples=feedback,
                      rings=rings, scorer=scorer)


def rank_by_scorer(reader: IndexReader, model: ModelInfo, places: list[PairPlaces], scorer: ChangeScorer,
                   params: ChangeParams, is_cancelled: Callable[[], bool] | None = None) -> ChangeResult:
    """Places of pairs already at hand ranked by a saved search by change (a standing search's re-run on
    the pairs made since it was saved: core/standing_change.py); the scorer's areas are left out."""
    started = time.perf_counter()
    run = _Run(reader, model, params, is_cancelled)
    run.places, run.given = list(places), list(places)
    hits, all_excluded = run.rank(change_likeness(run.places, scorer), list(scorer.areas))
    return run.result(hits, scorer_kind(scorer), started, all_excluded=all_excluded, scorer=scorer)


def change_likeness(places: list[PairPlaces], scorer: ChangeScorer) -> list[np.ndarray]:
    """Each pair's places scored by how like the scorer's change theirs is: the cosine of change directions
    with Rocchio's query, or the classifier's probability; damped where a place changed less than the
    examples (core/change_scores.like_change)."""
    scores = []
    for p in places:
        similarity = example_scores(change_vectors(p.before, p.after), scorer.query, scorer.weights, scorer.bias)
        scores.append(like_change(similarity, p.before, p.after, scorer.size))
    return scores


def scorer_kind(scorer: ChangeScorer) -> str:
    return "cosine" if scorer.weights is None else "probability"


class _Run:
    """One question about pairs of dates: the index, the model, the places of the pairs given."""

    def __init__(self, reader: IndexReader, model: ModelInfo, params: ChangeParams,
                 is_cancelled: Callable[[], bool] | None):
        self.reader, self.model, self.params, self.is_cancelled = reader, model, params, is_cancelled
        self.places: list[PairPlaces] = []
        self.given: list[PairPlaces] = []
        self.notes: list[str] = []
        self._session: Embedder | None = None

    @classmethod
    def start(cls, index_dir, before, after, params: ChangeParams, progress: Progress | None,
              is_cancelled: Callable[[], bool] | None) -> _Run:
        reader = index_reader(index_dir)
        run = cls(reader, model_for(reader, params.ranking()), params, is_cancelled)
        plan = plan_pairs(reader, run.model, before, after)
        run.notes += plan.notes
        share = 100.0 / len(plan.pairs)
        for number, pair in enumerate(plan.pairs):
            step = _scaled(progress, number * share, share)
            places, notes = pair_places(reader, run.model, pair, params.min_coverage, params.batch_size,
                                        run.session, step, is_cancelled)
            run.places.append(places)
            run.notes += notes
        run.given = list(run.places)
        if progress:
            progress(100.0, "ranking places")
        return run

    def session(self) -> Embedder:
        """The model's shared session, made when first needed (stored pairs need none)."""
        if self._session is None:
            self._session = shared_embedder(self.model, self.params.device)
        return self._session

    def embed(self, tiles: np.ndarray, tta: bool) -> np.ndarray:
        session = self.session()
        return (session.embed_tta if tta else session.embed)(tiles)

    def rank(self, scores: list[np.ndarray], areas: list[QueryArea]) -> tuple[list[ChangeHit], bool]:
        """The top places by score (one score a place: its best over the pairs), as change hits."""
        ids = np.concatenate([p.tile_ids for p in self.places])
        flat = np.concatenate([np.asarray(s, np.float64) for s in scores]).astype(np.float32)
        owner = np.concatenate([np.full(len(p.tile_ids), i) for i, p in enumerate(self.places)])
        row = np.concatenate([np.arange(len(p.tile_ids)) for p in self.places])
        order = np.argsort(-flat, kind="stable")
        _, first = np.unique(ids[order], return_index=True)  # each place once, with its best score
        best = order[np.sort(first)]
        where = {int(ids[i]): (int(owner[i]), int(row[i])) for i in best}
        ranked_scores, ranked_ids = flat[best], ids[best]
        hits, all_excluded = rank(self.reader, lambda n: (ranked_scores[:n], ranked_ids[:n]),
                                  self.params.ranking(), areas, self.is_cancelled)
        return [self._change_hit(hit, *where[hit.tile_id]) for hit in hits], all_excluded

    def _change_hit(self, hit: Hit, owner: int, row: int) -> ChangeHit:
        places = self.places[owner]
        after = places.pair.after
        return ChangeHit(hit=hit, after=after.path, after_window=tuple(int(v) for v in places.after_windows[row]),
                         after_crs_wkt=after.crs_wkt, after_bands=tuple(after.bands), after_stretch=after.stretch)

    def result(self, hits: list[ChangeHit], scoring: str, started: float, all_excluded: bool = False,
               examples: Feedback | None = None, rings: tuple = (), scorer: ChangeScorer | None = None) -> ChangeResult:
        provider = self._session.describe() if self._session else "stored embeddings (nothing embedded)"
        return ChangeResult(hits=hits, scoring=scoring, pairs=tuple(p.counts for p in self.places),
                            crs_wkt=self.given[0].pair.before.crs_wkt, provider=provider,
                            seconds=time.perf_counter() - started, examples=examples, example_polygons=rings,
                            all_excluded=all_excluded, notes=tuple(self.notes), scorer=scorer)


def _scaled(progress: Progress | None, start: float, span: float) -> Progress | None:
    """A progress callback for one part of the work: its 0-100 % mapped onto start..start+span."""
    if progress is None:
        return None
    return lambda percent, message: progress(min(99.0, start + span * percent / 100.0), message)
