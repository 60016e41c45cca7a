"""Metric functions against values computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from training.eval.metrics import average_precision, interpolated_precision, nmrr, precision_at, rank, relevance
from training.eval.report import mean_average_precision, retrieval_report


def test_average_precision_eq10_by_hand():
    rel = np.array([[1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]], dtype=bool)
    # Query 1: P_1 = 1, P_3 = 2/3, P_6 = 3/6 over T = 3 relevant images.
    assert average_precision(rel)[0] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert average_precision(rel)[1] == 0.0
    # Top Q = 3: T counts the relevant images among the 3 retrieved (eq. 10's T).
    assert average_precision(rel, 3)[0] == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(rel, 2)[0] == pytest.approx(1.0)


def test_precision_at_k_by_hand():
    rel = np.array([[1, 0, 1, 1, 0]], dtype=bool)
    assert [precision_at(rel, k)[0] for k in (1, 2, 4, 5)] == pytest.approx([1, 0.5, 0.75, 0.6])


def test_nmrr_by_hand():
    rel = np.zeros((2, 10), dtype=bool)
    rel[0, [0, 3]] = True        # ranks 1 and 4
    rel[1, [5, 6]] = True        # ranks 6 and 7, beyond K = min(4 * 2, 2 * 2) = 4: count as 1.25 K = 5
    ng = np.array([2, 2])
    got = nmrr(rel, ng, gtm=2)
    # AVR = 2.5, MRR = 2.5 - 0.5 - 1 = 1, NMRR = 1 / (5 - 0.5 - 1); the second query: (5 - 1.5) / 3.5.
    assert got == pytest.approx([1 / 3.5, 1.0])
    perfect = np.zeros((1, 10), dtype=bool)
    perfect[0, :3] = True
    assert nmrr(perfect, np.array([3]), gtm=3) == pytest.approx([0.0])


def test_interpolated_precision_by_hand():
    rel = np.array([[1, 0, 1, 0]], dtype=bool)
    # precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1.
    got = interpolated_precision(rel, np.array([2]), np.array([0.0, 0.5, 1.0]))
    assert got[0] == pytest.approx([1.0, 1.0, 2 / 3])


def test_rank_excludes_only_the_query_itself():
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # rows 0 and 1 are duplicates
    order = rank(emb, emb, np.arange(3))
    assert order.shape == (3, 2)
    assert order[0].tolist() == [1, 2] and order[1].tolist() == [0, 2] and order[2][0] != 2
    assert relevance(order, np.array([0, 0, 1]), np.array([0, 0, 1]))[0].tolist() == [True, False]


def test_report_on_perfectly_separated_classes():
    labels = np.repeat(np.arange(3), 4)
    emb = np.eye(3)[labels] + 0.01 * np.random.default_rng(0).standard_normal((12, 3))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    report = retrieval_report(emb, labels, emb, labels, ["a", "b", "c"], same_set=True, ks=(3, 5), chunk=5)
    assert report["map"] == pytest.approx(1.0) and report["anmrr"] == pytest.approx(0.0)
    assert report["precision_at"]["3"] == pytest.approx(1.0) and report["precision_at"]["5"] == pytest.approx(3 / 5)
    assert report["map_at"]["5"] == pytest.approx(1.0)
    assert set(report["per_class_ap"]) == {"a", "b", "c"} and report["pr_curve"]["precision"][-1] == pytest.approx(1.0)
    assert mean_average_precision(emb, labels, chunk=5) == pytest.approx(1.0)


def test_report_chunking_does_not_change_results():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 30)
    emb = rng.standard_normal((30, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    a = retrieval_report(emb, labels, emb, labels, list("abcd"), same_set=True, chunk=7)
    b = retrieval_report(emb, labels, emb, labels, list("abcd"), same_set=True, chunk=100)
    assert a == b
    assert 0.0 < a["map"] < 1.0 and mean_average_precision(emb, labels, chunk=4) == pytest.approx(a["map"])
