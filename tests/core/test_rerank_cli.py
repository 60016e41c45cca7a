"""Re-ranking on the command line (issue 22 item 3): `rsir search --no-rerank` is the ranking by the query's
own embedding, exactly the engine's rerank=False and never the default; `index build --dba` adds database-side
augmentation, which later builds keep, `index info` reports, and `--no-dba` removes; in a subprocess, as a
user runs it."""
import json

import numpy as np
import pytest
import rasterio

from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.search import search_box
from rsir_qgis_plugin.core.store import read_manifest
from tests.core.test_cli import rsir


def hits(found) -> list[tuple]:
    return [(f["properties"]["raster"], round(f["properties"]["score"], 5), tuple(f["geometry"]["coordinates"][0][0]))
            for f in json.loads(found.stdout)["features"] if f["properties"]["rank"] > 0]


def test_no_rerank_and_dba_from_the_command_line(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    rsir("index", "build", index, town_crop, "--model", tiny_model, "--tile-size", "64", "--stride", "32")
    assert "dba" not in read_manifest(index)
    with rasterio.open(town_crop) as src:
        left, top = src.transform * (96, 96)
        right, bottom = src.transform * (160, 160)
    query = ["search", index, "--raster", town_crop, "--bbox", left, bottom, right, top, "-k", "8"]
    plain = rsir(*query, "--no-rerank")
    engine = search_box(index, town_crop, (left, bottom, right, top), None, SearchParams(k=8, rerank=False))
    assert [score for _, score, _ in hits(plain)] == pytest.approx([h.score for h in engine.hits], abs=1e-4)
    assert np.allclose([corner for *_, corner in hits(plain)], [h.polygon[0] for h in engine.hits])
    assert hits(rsir(*query)) != hits(plain)  # re-ranked by default

    built = rsir("index", "build", index, "--dba")  # no raster: the same index, rewritten with DBA
    assert "database-side augmentation" in built.stdout and read_manifest(index)["dba"]["neighbours"] == 10
    assert "database-side augmentation (top 10 neighbours" in rsir("index", "info", index).stdout
    assert hits(rsir(*query, "--no-rerank")) == hits(plain)  # the model's embeddings are still there
    rsir("index", "build", index)
    assert read_manifest(index)["dba"]  # kept by a build that does not say
    rsir("index", "build", index, "--no-dba")
    assert "dba" not in read_manifest(index)
    both = rsir("index", "build", index, "--dba", "--no-dba", check=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr
