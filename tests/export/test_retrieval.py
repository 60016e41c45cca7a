"""mAP against hand-computed average precisions."""
from __future__ import annotations

import numpy as np

from export.retrieval import average_precisions, mean_average_precision


def test_average_precision_by_hand():
    # 1-d embeddings on a circle: angles decide cosine ranking.
    angles = np.radians([0, 10, 100, 20])
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 0, 1])
    aps = average_precisions(embeddings, labels)
    # query 0 ranks 1 (0), 3 (1), 2 (0): relevant at ranks 1 and 3 -> (1 + 2/3) / 2
    assert np.isclose(aps[0], (1 + 2 / 3) / 2)
    # query 3 (label 1) has no other item of its class
    assert aps[3] == 0.0
    assert np.isclose(mean_average_precision(embeddings, labels), aps.mean())


def test_perfect_and_worst_rankings():
    labels = np.repeat(np.arange(3), 4)
    assert mean_average_precision(np.eye(3)[labels], labels) == 1.0
    # Each item's class-mate sits opposite it, behind the other class: AP 1/3 for every query.
    angles = np.radians([0, 180, 10, 190])
    worst = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    np.testing.assert_allclose(average_precisions(worst, np.array([0, 0, 1, 1])), 1 / 3)
