"""rsir:map_matches through processing.run, on the real town index: the map file it writes is the one the
engine makes from the same labels, and QGIS opens it as a polygon layer."""
from __future__ import annotations

import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer

from rsir_qgis_plugin.core.examples import Feedback, LabelledBox
from rsir_qgis_plugin.core.labels_io import write_labels
from rsir_qgis_plugin.core.map_io import read_map
from rsir_qgis_plugin.core.match_map import MapParams, map_matches
from rsir_qgis_plugin.core.params import SearchParams


def labelled(town_index, town_half, folder):
    """A labels file of two positive and two negative tiles from a real box search."""
    import rasterio

    from rsir_qgis_plugin.core.search import search_box

    with rasterio.open(town_half) as src:
        left, top = src.bounds.left, src.bounds.top
    hits = search_box(town_index, town_half, (left + 20.0, top - 30.0, left + 26.4, top - 23.6), None,
                      SearchParams(k=12, rerank=False)).hits

    def box(hit, positive):
        xs, ys = zip(*hit.polygon)
        return LabelledBox(hit.raster, (min(xs), min(ys), max(xs), max(ys)), None, positive)

    feedback = Feedback((box(hits[0], True), box(hits[1], True), box(hits[-1], False), box(hits[-2], False)))
    return write_labels(feedback, folder / "labels.gpkg")


def test_map_matches_writes_the_engines_map(provider, project, town_index, town_half, tmp_path):
    import processing

    labels_path = labelled(town_index, town_half, tmp_path)
    labels = QgsVectorLayer(str(labels_path), "labels", "ogr")
    assert labels.isValid()
    project.addMapLayer(labels)
    out = tmp_path / "map.gpkg"
    result = processing.run("rsir:map_matches", {"INDEX": str(town_index), "LABELS": labels, "THRESHOLD": 0.4,
                                                 "OUTPUT": str(out)})
    engine = map_matches(town_index, labels_path, MapParams(threshold=0.4))
    written = read_map(out)
    assert engine.tiles > 0 and engine.scoring == "probability"
    assert (result["POLYGONS"], result["TILES"]) == (len(engine.polygons), engine.tiles)
    assert result["AREA_M2"] == pytest.approx(engine.area_m2)
    assert [(p.raster, p.tiles, p.rings) for p in written.polygons] == [
        (p.raster, p.tiles, p.rings) for p in engine.polygons]
    assert (written.threshold, written.labels) == (0.4, str(labels_path))
    layer = QgsVectorLayer(f"{out}|layername=rsir_map", "map", "ogr")
    assert layer.isValid() and layer.featureCount() == len(engine.polygons)
    assert layer.fields().names()[-6:] == ["map_id", "raster", "score_mean", "score_max", "tiles", "area_m2"]
    with pytest.raises(QgsProcessingException, match="unsupported map format"):
        processing.run("rsir:map_matches", {"INDEX": str(town_index), "LABELS": labels, "THRESHOLD": 0.4,
                                            "OUTPUT": str(tmp_path / "map.shp")})
