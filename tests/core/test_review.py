"""The statistics of a map review (core/review.py): the Wilson interval against published values, the
stratified sample, and the coverage of the 95 % intervals on synthetic Bernoulli populations."""
from __future__ import annotations

import numpy as np
import pytest

from rsir_qgis_plugin.core.errors import RsirError
from rsir_qgis_plugin.core.review import (
    Stratum,
    allocate,
    draw_sample,
    estimate_precision,
    finite_sample_size,
    wilson_interval,
)


@pytest.mark.parametrize("x, n, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (score interval without correction)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
])
def test_wilson_interval_matches_published_values(x, n, low, high):
    assert wilson_interval(x, n) == pytest.approx((low, high), abs=6e-5)


def test_finite_population_narrows_and_a_census_is_exact():
    assert finite_sample_size(10, 10) == np.inf
    assert finite_sample_size(10, 1_000_000) == pytest.approx(10, rel=1e-4)
    assert finite_sample_size(10, 20) == pytest.approx(19.0)
    whole = estimate_precision([Stratum(1, 0.5, 0.9, 4), Stratum(2, 0.9, 1.0, 3)], [4, 3], [2, 3])
    assert (whole.precision, whole.low, whole.high) == (pytest.approx(5 / 7),) * 3
    one = estimate_precision([Stratum(1, 0.5, 0.9, 20)], [10], [5])
    assert (one.strata[0].low, one.strata[0].high) == pytest.approx(wilson_interval(5 * 19 / 10, 19.0))
    assert one.effective_n == pytest.approx(9 / 0.5)  # p(1-p) / ((1 - 10/20) p(1-p) / (10 - 1))


def test_the_overall_estimate_weights_strata_by_their_size():
    strata = [Stratum(1, 0.5, 0.7, 900), Stratum(2, 0.7, 1.0, 100)]
    estimate = estimate_precision(strata, [10, 10], [2, 10])
    assert estimate.precision == pytest.approx(0.9 * 0.2 + 0.1 * 1.0)
    assert estimate.low < estimate.precision < estimate.high
    assert [part.precision for part in estimate.strata] == [0.2, 1.0]
    assert estimate.strata[1].low < 1.0 == estimate.strata[1].high  # all yes is not certainty
    # Effective size never above the sample's own: stratification is not credited with more than it shows.
    assert estimate.effective_n <= finite_sample_size(20, 1000) + 1e-9
    assert "precision 0.28" in estimate.describe()[0] and len(estimate.describe()) == 3


def test_a_stratum_without_a_reviewed_polygon_is_refused():
    with pytest.raises(RsirError, match="stratum 2 .* has no reviewed polygon"):
        estimate_precision([Stratum(1, 0.5, 0.7, 9), Stratum(2, 0.7, 1.0, 9)], [3, 0], [1, 0])


def test_the_sample_is_stratified_by_score_seeded_and_shuffled():
    rng = np.random.default_rng(3)
    scores = rng.random(301)
    ids = np.arange(1, 302)
    sample = draw_sample(scores, ids, 30, strata=3, seed=11)
    assert sample == draw_sample(scores, ids, 30, strata=3, seed=11)
    assert sample != draw_sample(scores, ids, 30, strata=3, seed=12)
    assert [s.size for s in sample.strata] == [101, 100, 100] and sample.population == 301
    assert len(set(sample.picks)) == 30
    assert [sample.stratum_of.count(h) for h in (1, 2, 3)] == [10, 10, 10]
    for pick, h in zip(sample.picks, sample.stratum_of):
        stratum = sample.strata[h - 1]
        assert stratum.low <= scores[pick] <= stratum.high
    assert sample.strata[0].high <= sample.strata[1].low <= sample.strata[1].high <= sample.strata[2].low
    assert list(sample.stratum_of) != sorted(sample.stratum_of)  # not shown stratum by stratum


def test_small_maps_and_samples():
    assert allocate([100, 10, 5], 12) == [8, 2, 2]  # at least 2 a stratum
    assert allocate([3, 3, 3], 30) == [3, 3, 3]
    assert sum(allocate([7, 1, 50], 5)) == 5
    census = draw_sample([0.5, 0.9, 0.7], [1, 2, 3], 10)
    assert sorted(census.picks) == [0, 1, 2]
    few = draw_sample(np.linspace(0.5, 1, 50), np.arange(50), 3, strata=3)
    assert len(few.strata) == 1 and len(few.picks) == 3  # 3 polygons cannot give 3 strata 2 each
    with pytest.raises(RsirError, match="no polygon"):
        draw_sample([], [], 5)


def coverage(sizes, precisions, n, reps, seed):
    """How often the 95 % interval holds the true precision of a random population of this make-up,
    and the intervals' mean width."""
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    scores = np.sort(rng.random(total))  # strata of equal counts follow the score ranking
    bounds = np.cumsum([0] + list(sizes))
    hits, widths = 0, []
    for _ in range(reps):
        truth = np.concatenate([rng.random(size) < p for size, p in zip(sizes, precisions)])
        sample = draw_sample(scores, np.arange(total), n, strata=len(sizes), seed=int(rng.integers(1 << 31)))
        reviewed, relevant = [0] * len(sizes), [0] * len(sizes)
        for pick, h in zip(sample.picks, sample.stratum_of):
            reviewed[h - 1] += 1
            relevant[h - 1] += int(truth[pick])
        estimate = estimate_precision(sample.strata, reviewed, relevant)
        hits += estimate.low <= truth.mean() <= estimate.high
        widths.append(estimate.high - estimate.low)
    assert bounds[-1] == total
    return hits / reps, float(np.mean(widths))


@pytest.mark.parametrize("sizes, precisions, n", [
    ((300, 300, 300), (0.6, 0.85, 0.97), 30),  # precision rising with score, a typical map
    ((100, 100, 100), (0.9, 0.97, 1.0), 15),  # nearly all right: where Wald's interval fails
    ((40, 40, 40), (0.3, 0.5, 0.8), 40),  # a third of a small map reviewed
])
def test_intervals_cover_the_true_precision_about_95_percent_of_the_time(sizes, precisions, n):
    rate, width = coverage(sizes, precisions, n, reps=400, seed=5)
    # 400 draws: a 95 % interval's coverage lies in 0.93-0.97 (2 standard errors); honest allows conservative.
    assert 0.93 <= rate <= 0.995, rate
    assert width < 0.45
