"""Both Processing algorithms through processing.run, as the toolbox, the modeler and qgis_process use them."""
from __future__ import annotations

import pytest
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)


@pytest.fixture
def provider(qgis_processing):
    from rsir_qgis_plugin.processing.provider import RsirProvider

    registry = QgsApplication.processingRegistry()
    provider = RsirProvider()
    assert registry.addProvider(provider)
    yield provider
    registry.removeProvider(provider)


@pytest.fixture
def raster(project, town_half) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(town_half), "town left", "gdal")
    project.addMapLayer(layer)
    return layer


def test_build_index_then_find_similar(provider, raster, tiny_model, tmp_path):
    import processing

    from rsir_qgis_plugin.core.store import read_index_info

    index_dir = tmp_path / "index"
    built = processing.run("rsir:build_index", {
        "RASTERS": [raster], "INDEX": str(index_dir), "MODEL": str(tiny_model),
        "TILE_SIZE": 64, "STRIDE": 64, "BANDS": "1,2,3", "DEVICE": 1, "TTA": True})  # 1: cpu
    info = read_index_info(index_dir)
    assert built["INDEX"] == str(index_dir)
    assert built["TILES_TOTAL"] == info.tile_count > 64
    assert "tiles" in built["SUMMARY"] and "4-rotation TTA" in built["SUMMARY"]

    # The query extent in Web Mercator while the raster is World Mercator: the algorithm reprojects.
    to_3857 = QgsCoordinateTransform(raster.crs(), QgsCoordinateReferenceSystem("EPSG:3857"), QgsProject.instance())
    center = raster.extent().center()
    local = QgsRectangle(center.x() - 3.2, center.y() + 10, center.x() + 3.2, center.y() + 16.4)
    box = to_3857.transformBoundingBox(local)
    extent = f"{box.xMinimum()},{box.xMaximum()},{box.yMinimum()},{box.yMaximum()} [EPSG:3857]"
    found = processing.run("rsir:find_similar", {
        "INDEX": str(index_dir), "RASTER": raster, "EXTENT": extent, "K": 5, "TTA": False,
        "OUTPUT": "TEMPORARY_OUTPUT"})
    hits = found["OUTPUT"]
    assert [f.name() for f in hits.fields()] == ["rank", "score", "raster"]
    assert hits.crs() == raster.crs()
    features = sorted(hits.getFeatures(), key=lambda f: f["rank"])
    assert [f["rank"] for f in features] == [1, 2, 3, 4, 5]
    assert [f["score"] for f in features] == sorted((f["score"] for f in features), reverse=True)
    for feature in features:
        bounds = feature.geometry().boundingBox()
        assert raster.extent().contains(bounds)
        assert bounds.width() == pytest.approx(64 * raster.rasterUnitsPerPixelX(), rel=1e-6)
        assert not bounds.intersects(local) or bounds.intersect(local).area() < 1e-9  # query area excluded

    # TTA and a score threshold reach the engine (a threshold above every score leaves nothing).
    strict = processing.run("rsir:find_similar", {
        "INDEX": str(index_dir), "RASTER": raster, "EXTENT": extent, "K": 5, "TTA": True,
        "MIN_SCORE": 0.9999999, "OUTPUT": "TEMPORARY_OUTPUT"})
    assert strict["OUTPUT"].featureCount() <= 1


def test_algorithm_errors_are_processing_errors(provider, raster, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="no rsir index|manifest|index"):
        processing.run("rsir:find_similar", {
            "INDEX": str(tmp_path), "RASTER": raster, "EXTENT": raster.extent(), "K": 5,
            "OUTPUT": "TEMPORARY_OUTPUT"})


def test_build_index_refuses_bands_the_layers_lack_before_reading_them(provider, raster, tiny_model, tmp_path):
    import processing

    index_dir = tmp_path / "index"
    with pytest.raises(QgsProcessingException, match="Band 9 does not exist: 'town left' has 3 band"):
        processing.run("rsir:build_index", {
            "RASTERS": [raster], "INDEX": str(index_dir), "MODEL": str(tiny_model), "BANDS": "9,2,1"})
    with pytest.raises(QgsProcessingException, match="The model takes 3 band"):
        processing.run("rsir:build_index", {
            "RASTERS": [raster], "INDEX": str(index_dir), "MODEL": str(tiny_model), "BANDS": "1,2"})
    assert not index_dir.exists() or not any(index_dir.iterdir())


def test_build_index_reports_progress_and_honours_cancel(provider, raster, tiny_model, tmp_path):
    import processing

    feedback = QgsProcessingFeedback()
    seen = []

    def on_progress(value):
        seen.append(value)
        if value >= 5:
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("rsir:build_index", {
            "RASTERS": [raster], "INDEX": str(tmp_path / "index"), "MODEL": str(tiny_model),
            "TILE_SIZE": 64, "STRIDE": 16}, feedback=feedback)
    assert seen and max(seen) < 90
    assert not (tmp_path / "index" / "manifest.json").exists(), "a cancelled first build leaves no index"
