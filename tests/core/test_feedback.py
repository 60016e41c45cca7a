"""Relevance feedback against a real index: stored vectors for marked hits, Rocchio, the classifier,
exclusion of labelled areas, and one clear line for each bad input."""
import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from rsir_qgis_plugin.core.errors import RasterError, RsirError, SearchCancelled
from rsir_qgis_plugin.core.feedback import (
    Feedback,
    LabelledBox,
    fit_logistic,
    rocchio,
    search_feedback,
)
from rsir_qgis_plugin.core.geometry import window_iou
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.search import search_box
from rsir_qgis_plugin.core.store import shared_reader


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_model):
    from tests.conftest import indexed_town_crop

    return indexed_town_crop(tmp_path_factory.mktemp("feedback"), tiny_model)


def pixel_box(raster, col, row, size):
    with rasterio.open(raster) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + size, row + size)
    return left, bottom, right, top


def hit_box(hit, positive=True):
    xs, ys = zip(*hit.polygon)
    return LabelledBox(raster=hit.raster, bbox=(min(xs), min(ys), max(xs), max(ys)), crs=None,
                       positive=positive)


def first_hits(index, raster, k=12):
    """Hits to label: the model's own ranking (no re-ranking), the same hits whatever αQE does."""
    return search_box(index, raster, pixel_box(raster, 96, 96, 96), None, SearchParams(k=k, rerank=False)).hits


def unit(v):
    return v / np.linalg.norm(v)


def test_a_marked_hit_uses_its_stored_vector_and_is_never_returned(index):
    index_dir, raster = index
    hit = first_hits(index_dir, raster)[0]
    result = search_feedback(index_dir, Feedback((hit_box(hit),)), SearchParams(k=8))
    reader = shared_reader(index_dir)
    stored = reader.vectors([hit.tile_id])[0]
    assert result.scoring == "cosine" and result.provider == "stored vectors of 1 indexed tile(s)"
    assert hit.tile_id not in [h.tile_id for h in result.hits]
    for h in result.hits:  # the score is the cosine with the stored vector itself: nothing was re-embedded
        assert h.score == pytest.approx(float(reader.vectors([h.tile_id])[0] @ stored), abs=1e-5)
        assert window_iou(h.window, hit.window) == 0  # hits overlapping a labelled box are left out
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_a_drawn_box_is_embedded_like_a_query_box(index):
    index_dir, raster = index
    box = pixel_box(raster, 100, 90, 90)  # on no tile's grid
    plain = search_box(index_dir, raster, box, None, SearchParams(k=6, rerank=False))  # feedback never re-ranks
    refined = search_feedback(index_dir, Feedback((LabelledBox(str(raster), box, None, True),)),
                              SearchParams(k=6))
    assert "stored vectors" not in refined.provider
    assert [(h.tile_id, h.window) for h in refined.hits] == [(h.tile_id, h.window) for h in plain.hits]
    assert [h.score for h in refined.hits] == pytest.approx([h.score for h in plain.hits], abs=1e-5)


def test_a_hit_given_in_another_crs_is_still_its_tile_when_the_box_is_exact(index):
    index_dir, raster = index
    hit = first_hits(index_dir, raster)[0]
    box = hit_box(hit).bbox
    with rasterio.open(raster) as src:
        crs = src.crs.to_wkt()
    # the same box in EPSG:3857 and back by GDAL: exact up to rounding, so it is the tile
    there = transform_bounds(crs, "EPSG:3857", *box)
    back = transform_bounds("EPSG:3857", crs, *there)
    assert np.allclose(back, box, atol=1e-6)
    result = search_feedback(index_dir, Feedback((LabelledBox(hit.raster, back, crs, True),)),
                             SearchParams(k=4))
    assert result.provider == "stored vectors of 1 indexed tile(s)"
    # a box off the tile by a third of a pixel is another box, embedded from pixels
    shifted = (box[0] + 0.033, box[1], box[2] + 0.033, box[3])
    other = search_feedback(index_dir, Feedback((LabelledBox(hit.raster, shifted, None, True),)),
                            SearchParams(k=4))
    assert "stored vectors" not in other.provider


def test_rocchio_with_one_negative_scores_by_the_mean_less_half_the_negative(index):
    index_dir, raster = index
    hits = first_hits(index_dir, raster)
    feedback = Feedback((hit_box(hits[0]), hit_box(hits[1]), hit_box(hits[5], positive=False)))
    result = search_feedback(index_dir, feedback, SearchParams(k=6))
    reader = shared_reader(index_dir)
    pos = reader.vectors([hits[0].tile_id, hits[1].tile_id])
    neg = reader.vectors([hits[5].tile_id])
    query = unit(pos.mean(0) - 0.5 * neg.mean(0))
    assert result.scoring == "cosine"
    assert [h.score for h in result.hits] == pytest.approx(
        [float(reader.vectors([h.tile_id])[0] @ query) for h in result.hits], abs=1e-5)
    assert not {h.tile_id for h in result.hits} & {hits[0].tile_id, hits[1].tile_id, hits[5].tile_id}


def test_two_positives_and_two_negatives_rank_by_a_classifier_probability(index):
    index_dir, raster = index
    hits = first_hits(index_dir, raster, k=12)  # 9 places on this 49-tile raster, once NMS has thinned them
    labelled = [hit_box(hits[0]), hit_box(hits[2]), hit_box(hits[6], False), hit_box(hits[8], False)]
    params = SearchParams(k=8, nms_iou=1.0)  # NMS off: 8 hits left on this small raster
    result = search_feedback(index_dir, Feedback(tuple(labelled)), params)
    assert result.scoring == "probability"
    scores = [h.score for h in result.hits]
    assert all(0.0 < s < 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert len(result.hits) == 8 and [h.rank for h in result.hits] == list(range(1, 9))
    labelled_windows = [hits[i].window for i in (0, 2, 6, 8)]
    for h in result.hits:
        assert all(window_iou(h.window, w) == 0 for w in labelled_windows)
    # the probabilities are the fitted classifier's on the stored vectors
    reader = shared_reader(index_dir)
    pos = reader.vectors([hits[0].tile_id, hits[2].tile_id])
    neg = reader.vectors([hits[6].tile_id, hits[8].tile_id])
    weights, bias = fit_logistic(pos, neg, prior=rocchio(pos, neg))
    expected = 1 / (1 + np.exp(-(reader.vectors([h.tile_id for h in result.hits]) @ weights + bias)))
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    again = search_feedback(index_dir, Feedback(tuple(labelled)), params)
    assert [(h.tile_id, h.score) for h in again.hits] == [(h.tile_id, h.score) for h in result.hits]


def test_keep_overlap_still_leaves_out_the_labelled_tiles(index):
    index_dir, raster = index
    hit = first_hits(index_dir, raster)[0]
    every = SearchParams(k=100, nms_iou=1.0, exclude_query_overlap=False)
    result = search_feedback(index_dir, Feedback((hit_box(hit),)), every)
    assert len(result.hits) == shared_reader(index_dir).size - 1  # every tile but the labelled one
    assert hit.tile_id not in [h.tile_id for h in result.hits]
    assert any(window_iou(h.window, hit.window) > 0 for h in result.hits)  # its neighbours come back


def test_the_latest_label_of_a_box_wins(index):
    index_dir, raster = index
    hits = first_hits(index_dir, raster)
    feedback = Feedback((hit_box(hits[0]), hit_box(hits[1])))
    relabelled = feedback.with_box(hit_box(hits[1], positive=False))
    assert len(relabelled.boxes) == 2 and [b.positive for b in relabelled.boxes] == [True, False]
    assert Feedback(feedback.boxes + (hit_box(hits[1], positive=False),)).latest() == relabelled
    result = search_feedback(index_dir, relabelled, SearchParams(k=3))
    assert result.feedback == relabelled and len(result.feedback.negatives()) == 1
    # the same tile given another way (its bounds in the raster's CRS spelled out, as a labels file
    # gives it) is the same example: the label given last wins
    with rasterio.open(raster) as src:
        crs = src.crs.to_wkt()
    spelled = hit_box(hits[1], positive=True)
    spelled = LabelledBox(spelled.raster, spelled.bbox, crs, True)
    result = search_feedback(index_dir, relabelled.with_box(spelled), SearchParams(k=3))
    assert [b.positive for b in result.feedback.boxes] == [True, True] and result.feedback.boxes[1].crs == crs
    with pytest.raises(RsirError, match="every positive example is marked negative again later"):
        search_feedback(index_dir, Feedback((spelled, hit_box(hits[1], positive=False))), SearchParams(k=3))


def test_labelled_boxes_on_a_raster_that_is_not_indexed(index, tmp_path):
    from rasterio.windows import Window, transform

    from tests.conftest import town_pixels, write_raster

    index_dir, raster = index
    pixels, profile = town_pixels()
    other = write_raster(tmp_path / "elsewhere.tif", pixels[:, 640:896, 512:768].copy(), crs=profile["crs"],
                         transform=transform(Window(512, 640, 256, 256), profile["transform"]))
    feedback = Feedback((LabelledBox(str(other), pixel_box(other, 10, 10, 96), None, True),
                         LabelledBox(str(other), pixel_box(other, 120, 120, 96), None, False)))
    result = search_feedback(index_dir, feedback, SearchParams(k=4))
    assert result.scoring == "cosine" and len(result.hits) == 4 and "stored vectors" not in result.provider


@pytest.mark.parametrize("boxes, message", [
    ((), "needs at least one positive example"),
    (("neg",), "got 1 negative example(s) only"),
    (("inverted",), "positive example 1 on "),
    (("missing",), "not found (no such file) (positive example 1)"),
    (("crs",), "unknown coordinate reference system 'EPSG:999999'"),
    (("outside",), "does not overlap the raster"),
])
def test_bad_examples_are_one_clear_line(index, tmp_path, boxes, message):
    index_dir, raster = index
    box = pixel_box(raster, 0, 0, 96)
    made = {"neg": LabelledBox(str(raster), box, None, False),
            "inverted": LabelledBox(str(raster), (box[2], box[1], box[0], box[3]), None, True),
            "missing": LabelledBox(str(tmp_path / "gone.tif"), box, None, True),
            "crs": LabelledBox(str(raster), box, "EPSG:999999", True),
            "outside": LabelledBox(str(raster), (0.0, 0.0, 1.0, 1.0), None, True)}
    with pytest.raises(RsirError) as caught:
        search_feedback(index_dir, Feedback(tuple(made[b] for b in boxes)), SearchParams(k=3))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    if boxes in (("missing",), ("outside",)):
        assert isinstance(caught.value, RasterError)


def test_cancelled_before_ranking(index):
    index_dir, raster = index
    hit = first_hits(index_dir, raster)[0]
    with pytest.raises(SearchCancelled):
        search_feedback(index_dir, Feedback((hit_box(hit),)), SearchParams(k=3), is_cancelled=lambda: True)


def test_fit_logistic_separates_and_reduces_to_rocchio_under_a_strong_penalty():
    rng = np.random.default_rng(0)
    centre = unit(rng.normal(size=32))
    pos = np.stack([unit(centre + 0.3 * rng.normal(size=32)) for _ in range(5)])
    neg = np.stack([unit(-centre + 0.3 * rng.normal(size=32)) for _ in range(4)])
    weights, bias = fit_logistic(pos, neg)
    assert (pos @ weights + bias > 0).all() and (neg @ weights + bias < 0).all()
    assert fit_logistic(pos, neg) == (pytest.approx(weights), pytest.approx(bias))
    strong, _ = fit_logistic(pos, neg, l2=1e4)
    assert unit(strong) @ unit(pos.mean(0) - neg.mean(0)) > 0.999


@pytest.mark.parametrize("with_prior", [False, True])
def test_fit_logistic_reaches_the_minimum_of_its_loss_in_full_dimension(with_prior):
    """The fit works in the span of the examples: its answer must still zero the full D-dim gradient
    of the class-balanced log-loss + l2/2 |w - s * prior|^2 (s fitted on the similarity to the prior)."""
    rng = np.random.default_rng(1)
    pos = np.stack([unit(v) for v in rng.normal(size=(6, 64)) + 0.5])
    neg = np.stack([unit(v) for v in rng.normal(size=(3, 64))])
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.r_[np.ones(6), np.zeros(3)]
    weight = np.where(y == 1, 0.5 / 6, 0.5 / 3)
    l2 = 0.05
    prior = rocchio(pos, neg) if with_prior else None
    start = np.zeros(64)
    if with_prior:  # s and its bias by plain gradient descent on the 2-parameter loss
        r, theta = x @ prior, np.zeros(2)
        for _ in range(20000):
            p = 1 / (1 + np.exp(-(theta[0] * r + theta[1])))
            theta -= 2.0 * np.array([weight @ ((p - y) * r) + l2 * theta[0], weight @ (p - y)])
        start = theta[0] * prior
    weights, bias = fit_logistic(pos, neg, prior=prior, l2=l2)
    p = 1 / (1 + np.exp(-(x @ weights + bias)))
    gradient_w = x.T @ (weight * (p - y)) + l2 * (weights - start)
    assert np.abs(gradient_w).max() < 1e-5 and abs(weight @ (p - y)) < 1e-6


def test_rocchio_refuses_examples_that_cancel_out():
    v = unit(np.arange(1.0, 9.0))[None]
    with pytest.raises(RsirError, match="cancel out"):
        rocchio(0.5 * v, v)


def test_the_footprint_prefilter_never_drops_a_pair_that_overlaps_on_the_ground():
    """Feedback ranks thousands of candidates against many labelled boxes; NMS and exclusion compare
    lon/lat boxes before clipping quads. That shortcut must never hide a true overlap, across the
    antimeridian included (each quad's longitudes are unwrapped on their own)."""
    from rsir_qgis_plugin.core.footprints import boxes_may_overlap
    from rsir_qgis_plugin.core.geometry import ground_overlaps

    rng = np.random.default_rng(3)
    checked = overlapping = 0
    for _ in range(4000):
        centres = rng.uniform([-181.0, -60.0], [181.0, 60.0], (1, 2)) + rng.uniform(-0.6, 0.6, (2, 2))
        quads = []
        for lon, lat in centres:
            half = rng.uniform(0.05, 0.5, 2)
            quad = np.array([[lon - half[0], lat + half[1]], [lon + half[0], lat + half[1]],
                             [lon + half[0], lat - half[1]], [lon - half[0], lat - half[1]]])
            quad[:, 0] = (quad[:, 0] + 180.0) % 360.0 - 180.0  # wrapped as PROJ gives them...
            # ...then unwrapped per quad, as ground_quads does
            quad[:, 0] = quad[0, 0] + (quad[:, 0] - quad[0, 0] + 180.0) % 360.0 - 180.0
            quads.append(quad)
        boxes = [np.r_[q.min(axis=0), q.max(axis=0)] for q in quads]
        overlap = ground_overlaps(quads[0], quads[1])
        overlapping += overlap
        checked += 1
        assert boxes_may_overlap(boxes[0], boxes[1]) or not overlap
    assert overlapping > 500 and checked == 4000
    nan = np.full(4, np.nan)
    assert not boxes_may_overlap(nan, np.array([0.0, 0.0, 1.0, 1.0]))
