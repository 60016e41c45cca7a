"""Re-ranking in QGIS (issue 22 item 3): the dock's checkbox reaches the engine through a real search by drag,
and is kept in the settings; the Processing algorithms take it (find_similar) and DBA (build_index)."""
from __future__ import annotations

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

import rsir_qgis_plugin
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.search import search_box


def engine_hits(index, raster, result, rerank: bool) -> list[tuple]:
    """The engine's own answer to the query box the plugin searched (the box in the raster's CRS)."""
    xs, ys = zip(*result.query_polygon)
    box = (min(xs), min(ys), max(xs), max(ys))
    found = search_box(index, raster, box, None, SearchParams(k=6, rerank=rerank))
    return [(h.tile_id, round(h.score, 5)) for h in found.hits]


def test_the_dock_checkbox_turns_re_ranking_off_and_on_for_a_search_by_drag(plugin, town_layer, town_index,
                                                                             town_half, search_by_drag):
    dock = plugin.dock
    assert dock.rerank_check.isChecked() and dock.search_settings().to_params().rerank  # on by default
    plugin.search.show_index(town_index)
    dock.k_spin.setValue(6)
    dock.overlap_check.setChecked(True)
    dock.rerank_check.setChecked(False)
    plain = search_by_drag((270, 120), (330, 180))
    listed = [(h.tile_id, round(h.score, 5)) for h in plain.result.hits]
    assert listed == engine_hits(town_index, town_half, plain.result, rerank=False)
    dock.rerank_check.setChecked(True)
    reranked = search_by_drag((270, 120), (330, 180))
    assert reranked.result.query_polygon == plain.result.query_polygon
    assert [(h.tile_id, round(h.score, 5)) for h in reranked.result.hits] == engine_hits(
        town_index, town_half, reranked.result, rerank=True) != listed


def test_the_checkbox_is_kept_across_loads(qgis_iface, project):
    plugin = rsir_qgis_plugin.classFactory(qgis_iface)
    plugin.initGui()
    plugin.dock.rerank_check.setChecked(False)
    plugin.unload()
    again = rsir_qgis_plugin.classFactory(qgis_iface)
    again.initGui()
    try:
        assert not again.dock.rerank_check.isChecked()
        assert again.dock.search_settings().to_params() == SearchParams(rerank=False)
    finally:
        again.unload()


def test_processing_takes_rerank_and_dba(qgis_processing, project, town_half, tiny_model, tmp_path):
    import processing

    from rsir_qgis_plugin.core.store import read_manifest
    from rsir_qgis_plugin.processing.provider import RsirProvider

    registry = QgsApplication.processingRegistry()
    provider = RsirProvider()
    assert registry.addProvider(provider)
    try:
        layer = QgsRasterLayer(str(town_half), "town left", "gdal")
        QgsProject.instance().addMapLayer(layer)
        index = tmp_path / "index"
        processing.run("rsir:build_index", {"RASTERS": [layer], "INDEX": str(index), "MODEL": str(tiny_model),
                                            "TILE_SIZE": 64, "STRIDE": 64, "DEVICE": 1, "DBA": True})
        assert read_manifest(index)["dba"]["neighbours"] == 10
        centre = layer.extent().center()
        box = (centre.x() - 3.2, centre.y() + 10, centre.x() + 3.2, centre.y() + 16.4)
        extent = f"{box[0]},{box[2]},{box[1]},{box[3]} [{layer.crs().authid()}]"
        answers = {}
        for rerank in (False, True):
            found = processing.run("rsir:find_similar", {"INDEX": str(index), "RASTER": layer, "EXTENT": extent,
                                                          "K": 5, "RERANK": rerank, "OUTPUT": "TEMPORARY_OUTPUT"})
            scores = [f["score"] for f in sorted(found["OUTPUT"].getFeatures(), key=lambda f: f["rank"])]
            engine = search_box(index, town_half, box, None, SearchParams(k=5, rerank=rerank))
            assert len(scores) == 5 and all(abs(a - h.score) < 1e-5 for a, h in zip(scores, engine.hits))
            answers[rerank] = scores
        assert answers[False] != answers[True]
    finally:
        registry.removeProvider(provider)
