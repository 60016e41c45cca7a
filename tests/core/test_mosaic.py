"""Retrieval quality on real scenes: a georeferenced mosaic of AID scenes of known classes,
indexed with the bundled default model; querying a scene must rank scenes of its class first."""
import numpy as np
import pytest

from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.search import search_box
from tests.core.scene_mosaic import SCENE, indexed_scene_mosaic


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """40 real scenes (4 classes x 10) in shuffled cells of one UTM raster at 1 m/pixel."""
    return indexed_scene_mosaic(tmp_path_factory.mktemp("mosaic"), 150.0)


def test_scenes_of_the_query_class_rank_first(mosaic):
    path, index, classes, transform = mosaic
    precisions = []
    for (col, row), label in classes.items():
        left, top = transform * (col, row)
        box = (left, top - SCENE, left + SCENE, top)
        hits = search_box(index, path, box, None, SearchParams(k=3)).hits
        precisions.append(np.mean([classes[h.window[:2]] == label for h in hits]))
    # 9 of the 39 other scenes share the query's class: chance is 0.23.
    print(f"mosaic P@3 with the default model: {np.mean(precisions):.3f}")
    assert np.mean(precisions) >= 0.7, precisions
