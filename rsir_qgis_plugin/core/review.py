"""How far to trust a map: a random sample of its polygons stratified by score, and the precision
estimated from the analyst's yes/no marks with honest 95 % intervals. Plain numpy and math, no files
(core/review_io.py reads and writes the review file).

Sampling. The polygons are ranked by their best tile's score (score_max; ties by map id) and cut into
`strata` groups of equal count (1: the lowest scores). Rank cuts, not fixed score bands: a map's
scores sit above its threshold in a narrow range that fixed bands would leave mostly empty, and equal
counts make the proportional allocation below spread the sample evenly. Each stratum gets a share of
the sample proportional to its size (largest remainders; at least 2 where the stratum has them, so
each stratum's precision has an interval worth reading), drawn without replacement by a seeded
numpy Generator, and the polygons are shown in a random order, so scores do not lead the reviewer.

Per stratum. Precision x/n with a Wilson score interval, finite-population corrected: a sample of n
of a stratum's N polygons drawn without replacement has Var(p) = p(1-p)/n * (N-n)/(N-1), which is the
binomial variance of n' = n(N-1)/(N-n) draws, so the Wilson interval is taken at n'. A stratum
reviewed whole (n = N) is known exactly.

The whole map. The stratified estimate p = sum W_h p_h with W_h = N_h/N, and a Wilson interval at an
effective sample size (Korn & Graubard 1998; the NCHS data presentation standards for proportions,
2017): v = sum W_h^2 (1 - n_h/N_h) p_h(1-p_h)/(n_h - 1) is the stratified variance, and
n_eff = p(1-p)/v, never more than n' of the whole sample (n_eff at most n' means the design effect is
taken as at least 1: stratification is never credited with more than it can be shown to give), and
n' itself where p is 0 or 1 or v is 0 (strata that all came back all-yes would otherwise claim
certainty). Why this and not the Wald interval p +- 1.96 sqrt(v): precision of a map is usually near
1, where Wald's interval collapses (all-yes samples give [1, 1]) and covers the truth far less than
95 % of the time; Wilson's stays inside [0, 1] and keeps its coverage at small n (Brown, Cai &
DasGupta 2001). tests/core/test_review.py checks the coverage on synthetic populations;
benchmarks/review_coverage.py on maps of the AID mosaic.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import RsirError

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
DEFAULT_STRATA = 3
MIN_PER_STRATUM = 2  # sampled from each stratum that has as many polygons


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes/n (n may be an effective, fractional size)."""
    if n <= 0:
        return 0.0, 1.0
    successes, n = float(successes), float(n)  # plain floats out, whatever numbers came in (QGIS takes no numpy)
    p = min(max(successes / n, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def finite_sample_size(n: float, population: int) -> float:
    """n' = n(N-1)/(N-n): the binomial sample size with the variance of n drawn without replacement
    from N (infinite for a census, which is exact)."""
    if n >= population:
        return math.inf
    return n * (population - 1) / (population - n) if population > 1 else n


@dataclass(frozen=True)
class Stratum:
    """One score stratum of a map: its number (1 = lowest scores), score_max range and size."""

    number: int
    low: float
    high: float
    size: int  # polygons of the map in it

    def describe(self) -> str:
        return f"stratum {self.number} (score {self.low:.3f}-{self.high:.3f}, {self.size} polygons)"


@dataclass(frozen=True)
class Sample:
    """Which polygons to review: positions in the map's polygon list, in the order to show them, each
    with its stratum number; and the strata."""

    picks: tuple[int, ...]
    stratum_of: tuple[int, ...]  # the stratum number of each pick
    strata: tuple[Stratum, ...]
    seed: int | None

    @property
    def population(self) -> int:
        return sum(stratum.size for stratum in self.strata)


def stratum_numbers(scores: Sequence[float], ids: Sequence[int], strata: int) -> np.ndarray:
    """Each polygon's stratum (1..strata): equal-count groups of the ranking by (score, id)."""
    order = np.lexsort((np.asarray(ids), np.asarray(scores, dtype=np.float64)))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks * strata // max(len(order), 1) + 1


def allocate(sizes: Sequence[int], n: int) -> list[int]:
    """The sample's share of each stratum: proportional to size (largest remainders), at least
    MIN_PER_STRATUM where the stratum has them and n allows, never more than the stratum."""
    sizes = [int(s) for s in sizes]
    total = sum(sizes)
    n = min(n, total)
    floor = [min(MIN_PER_STRATUM, s) for s in sizes] if n >= MIN_PER_STRATUM * len(sizes) else [0] * len(sizes)
    exact = [n * s / total for s in sizes]
    counts = [min(s, max(f, math.floor(e))) for s, f, e in zip(sizes, floor, exact)]
    # Hand out what is left by largest remainder, then take back from the largest shares above their floor.
    by_remainder = sorted(range(len(sizes)), key=lambda h: (exact[h] - math.floor(exact[h]), sizes[h]), reverse=True)
    while sum(counts) < n:
        for h in by_remainder:
            if sum(counts) < n and counts[h] < sizes[h]:
                counts[h] += 1
    while sum(counts) > n:
        h = max((h for h in range(len(sizes)) if counts[h] > floor[h]), key=lambda h: counts[h] - exact[h])
        counts[h] -= 1
    return counts


def draw_sample(scores: Sequence[float], ids: Sequence[int], n: int, strata: int = DEFAULT_STRATA,
                seed: int | None = None) -> Sample:
    """A stratified random sample of n of the polygons (scores: each one's score_max; ids: map ids).

    Fewer strata where n cannot give each MIN_PER_STRATUM, or the map has fewer polygons than strata;
    n at least the map's size reviews every polygon.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        raise RsirError("the map holds no polygon to review")
    if n < 1 or strata < 1:
        raise RsirError(f"a sample needs at least 1 polygon and 1 stratum, got {n} and {strata}")
    if not np.isfinite(scores).all():
        raise RsirError("a polygon's score is not a finite number")
    strata = max(1, min(strata, len(scores), n // MIN_PER_STRATUM or 1))
    numbers = stratum_numbers(scores, ids, strata)
    members = [np.flatnonzero(numbers == h) for h in range(1, strata + 1)]
    described = tuple(Stratum(h, float(scores[m].min()), float(scores[m].max()), len(m))
                      for h, m in enumerate(members, start=1))
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for m, count in zip(members, allocate([len(m) for m in members], n)):
        picks += rng.choice(m, size=count, replace=False).tolist()
    shown = rng.permutation(len(picks))
    ordered = [picks[i] for i in shown]
    return Sample(tuple(int(i) for i in ordered), tuple(int(numbers[i]) for i in ordered), described, seed)


@dataclass(frozen=True)
class StratumEstimate:
    stratum: Stratum
    reviewed: int
    relevant: int
    precision: float
    low: float
    high: float

    def describe(self) -> str:
        return (f"{self.stratum.describe()}: {self.relevant}/{self.reviewed} relevant, precision "
                f"{self.precision:.2f} (95 % interval {self.low:.2f}-{self.high:.2f})")


@dataclass(frozen=True)
class PrecisionEstimate:
    """The map's precision (stratified estimate, 95 % Wilson interval at effective_n) and each stratum's."""

    precision: float
    low: float
    high: float
    reviewed: int
    relevant: int
    population: int
    effective_n: float
    strata: tuple[StratumEstimate, ...]

    def describe(self) -> list[str]:
        """Lines for the user: the whole map, then each stratum (lowest scores first)."""
        head = (f"precision {self.precision:.2f} (95 % interval {self.low:.2f}-{self.high:.2f}) from "
                f"{self.reviewed} reviewed polygons of {self.population} ({self.relevant} relevant; "
                f"{len(self.strata)} score strata, stratified Wilson interval)")
        return [head] + [part.describe() for part in self.strata]


def estimate_precision(strata: Sequence[Stratum], reviewed: Sequence[int],
                       relevant: Sequence[int], z: float = Z95) -> PrecisionEstimate:
    """The estimate from each stratum's count of reviewed and relevant polygons (method: module docstring)."""
    sizes = np.asarray([s.size for s in strata], dtype=np.float64)
    n_h = np.asarray(reviewed, dtype=np.float64)
    x_h = np.asarray(relevant, dtype=np.float64)
    for stratum, n, x in zip(strata, n_h, x_h):
        if n < 1:
            raise RsirError(f"{stratum.describe()} has no reviewed polygon: mark at least one in each stratum")
        if x > n or n > stratum.size:
            raise RsirError(f"{stratum.describe()}: {int(x)} relevant of {int(n)} reviewed cannot be")
    parts = []
    for stratum, n, x in zip(strata, n_h, x_h):
        if n >= stratum.size:
            low = high = float(x / n)  # reviewed whole
        else:
            low, high = wilson_interval(x * finite_sample_size(n, stratum.size) / n,
                                        finite_sample_size(n, stratum.size), z)
        parts.append(StratumEstimate(stratum, int(n), int(x), float(x / n), low, high))
    population = int(sizes.sum())
    weights = sizes / population
    p_h = x_h / n_h
    p = float(np.sum(weights * p_h))
    n = float(n_h.sum())
    if np.all(n_h >= sizes):
        p = float(x_h.sum()) / population  # every polygon reviewed: exactly the share relevant
        return PrecisionEstimate(p, p, p, int(n), int(x_h.sum()), population, math.inf, tuple(parts))
    variance = float(np.sum(weights ** 2 * (1 - n_h / sizes) * p_h * (1 - p_h) / np.maximum(n_h - 1, 1)))
    n_srs = finite_sample_size(n, population)
    effective = min(p * (1 - p) / variance, n_srs) if 0 < p < 1 and variance > 0 else n_srs
    low, high = wilson_interval(p * effective, effective, z)
    return PrecisionEstimate(p, low, high, int(n), int(x_h.sum()), population, effective, tuple(parts))
