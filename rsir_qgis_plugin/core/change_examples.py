"""The analyst's change examples: boxes marked on a before or an after raster of the pairs compared, each
read at both dates and turned into a change vector (after - before, normalised)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np

from .change_pairs import indexed_tta
from .change_scores import MIN_CHANGE
from .errors import RasterError, RsirError
from .examples import Feedback, LabelledBox
from .feedback import checked_example
from .geometry import reproject_ring
from .model import ModelInfo
from .pair_places import PairPlaces
from .query_box import query_window
from .query_step import QueryArea, query_areas, query_raster_path, read_box
from .store import IndexReader
from .tiling import window_corners

Embed = Callable[[np.ndarray, bool], np.ndarray]  # (tiles, tta) -> unit embeddings


def checked_examples(examples: Feedback | Sequence[LabelledBox]) -> Feedback:
    """The examples (the latest label of each box) with their numbers and CRSs checked; at least one
    positive. Raises RsirError naming the example."""
    feedback = (examples if isinstance(examples, Feedback) else Feedback(tuple(examples))).latest()
    if not feedback.positives():
        raise RsirError("a search by change needs at least one example of the change sought (--like)"
                        + (f"; got {len(feedback.boxes)} counter-example(s) only" if feedback.boxes else ""))
    return Feedback(tuple(checked_example(box, name) for box, name in zip(feedback.boxes, example_names(feedback))))


def example_names(feedback: Feedback) -> list[str]:
    """'example 1', 'counter-example 2', ... in the order given, for messages."""
    counts = {True: 0, False: 0}
    names = []
    for box in feedback.boxes:
        counts[box.positive] += 1
        names.append(f"{'example' if box.positive else 'counter-example'} {counts[box.positive]}")
    return names


def example_changes(reader: IndexReader, model: ModelInfo, pairs: list[PairPlaces], feedback: Feedback,
                    embed: Embed) -> tuple[np.ndarray, np.ndarray, list[QueryArea], tuple]:
    """Each example's unit change vector (n, D) and size |after - before| (n,), where it lies on its before
    raster (to leave out the places overlapping it), and its ring in the first before raster's CRS."""
    size = model.contract.input_size
    out_crs = pairs[0].pair.before.crs_wkt
    changes, sizes, areas, rings = [], [], [], []
    for box, name in zip(feedback.boxes, example_names(feedback)):
        places, crs = _pair_of(box, name, pairs)
        pair = places.pair
        try:
            before_window = query_window(pair.before, box.bbox, crs)
            after_window = query_window(pair.after, box.bbox, crs)
            tiles = np.stack([read_box(pair.before, before_window, size, box.bbox),
                              read_box(pair.after, after_window, size, box.bbox)])
        except RasterError as exc:
            raise RasterError(exc.path, f"{exc.problem} ({name})") from exc
        before, after = embed(tiles, indexed_tta(pair.before, model)).astype(np.float64)
        if not (np.isfinite(before).all() and np.isfinite(after).all()):
            raise RsirError(f"{name} on {box.raster}: the model gave a non-finite embedding; draw it elsewhere")
        diff = after - before
        norm = float(np.linalg.norm(diff))
        if norm < MIN_CHANGE:
            raise RsirError(f"{name} on {box.raster}: the box looks the same at both dates to the model, so it "
                            "shows no change to search for; draw it where the land changed")
        changes.append(diff / norm)
        sizes.append(norm)
        areas += query_areas(pair.before, [before_window])
        xs, ys = window_corners(pair.before.transform, before_window)
        rings.append(reproject_ring(list(zip(xs, ys)), pair.before.crs_wkt, out_crs))
    return np.asarray(changes, np.float32), np.asarray(sizes), areas, tuple(rings)


def _pair_of(box: LabelledBox, name: str, pairs: list[PairPlaces]) -> tuple[PairPlaces, str | None]:
    """The first pair the box lies on at both dates, and the box's CRS (the marked raster's by default)."""
    path = query_raster_path(box.raster)
    marked = [p for p in pairs if path in (p.pair.before.path, p.pair.after.path)]
    if not marked:
        raise RsirError(f"{name}: {box.raster} is neither a before nor an after raster of the comparison; mark "
                        "examples on the rasters compared")
    raster = marked[0].pair.before if marked[0].pair.before.path == path else marked[0].pair.after
    crs = box.crs or raster.crs_wkt or None
    first: RasterError | None = None
    for places in marked:
        try:
            query_window(places.pair.before, box.bbox, crs)
            query_window(places.pair.after, box.bbox, crs)
        except RasterError as exc:
            first = first or exc
            continue
        return places, crs
    raise RasterError(first.path, f"{first.problem} ({name}: an example is read at both dates)")
