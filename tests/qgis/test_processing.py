"""Both Processing algorithms through processing.run, as the toolbox, the modeler and qgis_process use them."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

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


class LogFeedback(QgsProcessingFeedback):
    """A real Processing feedback that also keeps every line it was given, by kind."""

    def __init__(self):
        super().__init__(False)
        self.lines: list[tuple[str, str]] = []

    def reportError(self, error, fatalError=False):  # noqa: N802 (QGIS API)
        self.lines.append(("error", error))
        super().reportError(error, fatalError)

    def pushWarning(self, warning):  # noqa: N802
        self.lines.append(("warning", warning))
        super().pushWarning(warning)

    def pushInfo(self, info):  # noqa: N802
        self.lines.append(("info", info))
        super().pushInfo(info)

    def mentions(self, text: str) -> int:
        """Warnings and errors that hold `text` (processing.run itself logs the results dict as info)."""
        return sum(text in line for kind, line in self.lines if kind != "info")


def test_build_index_names_each_failed_raster_and_fails_when_none_was_indexed(provider, town_half, truncated,
                                                                              tiny_model, tmp_path):
    """Issue 19 item 6: a truncated TIFF beside a good raster, then only broken ones."""
    import processing

    index_dir = tmp_path / "index"
    feedback = LogFeedback()
    built = processing.run("rsir:build_index", {
        "RASTERS": [str(town_half), str(truncated[0])], "INDEX": str(index_dir), "MODEL": str(tiny_model),
        "TILE_SIZE": 128, "STRIDE": 128, "DEVICE": 1}, feedback=feedback)
    failed = built["FAILED"].splitlines()
    assert len(failed) == 1 and failed[0].startswith(f"{truncated[0]}: ") and "cannot be read" in failed[0]
    assert ("warning", failed[0]) in feedback.lines and feedback.mentions(str(truncated[0])) == 1
    assert built["TILES_INDEXED"] > 0 and "1 raster(s) failed" in built["SUMMARY"]
    assert str(truncated[0]) not in built["SUMMARY"], "the reason is in FAILED and the log, not repeated"

    feedback = LogFeedback()
    with pytest.raises(QgsProcessingException, match="no raster could be indexed") as caught:
        processing.run("rsir:build_index", {
            "RASTERS": [str(p) for p in truncated], "INDEX": str(tmp_path / "none"), "MODEL": str(tiny_model),
            "TILE_SIZE": 128, "STRIDE": 128, "DEVICE": 1}, feedback=feedback)
    message = str(caught.value)
    assert "\n" not in message and "2 raster(s) failed" in message
    for path in truncated:  # each reason exactly once in the log, none in the exception
        assert feedback.mentions(f"{path}: ") == 1 and str(path) not in message
    assert not (tmp_path / "none" / "manifest.json").exists()


def test_build_index_needs_a_lasting_folder(provider, raster, tiny_model, tmp_path, project):
    """Issue 19 item 10: no temporary index folder, and the default is next to the project file."""
    import processing
    from qgis.core import QgsProcessingUtils

    for index in ("TEMPORARY_OUTPUT", str(Path(QgsProcessingUtils.tempFolder()) / "INDEX")):
        with pytest.raises(QgsProcessingException, match="temporary folder is deleted when QGIS exits"):
            processing.run("rsir:build_index",
                           {"RASTERS": [raster], "INDEX": index, "MODEL": str(tiny_model)})
    with pytest.raises(QgsProcessingException, match="INDEX"):
        processing.run("rsir:build_index", {"RASTERS": [raster], "MODEL": str(tiny_model)})

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("rsir:build_index")
    assert algorithm.parameterDefinition("INDEX").defaultValue() is None  # an unsaved project: none
    project.write(str(tmp_path / "site.qgz"))
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("rsir:build_index")
    assert algorithm.parameterDefinition("INDEX").defaultValue() == str(tmp_path / "site_rsir_index")


def test_build_index_takes_tile_size_and_stride_in_metres(provider, raster, tiny_model, town_half, tmp_path):
    import processing

    from rsir_qgis_plugin.core.params import TilingParams
    from rsir_qgis_plugin.core.raster import describe
    from rsir_qgis_plugin.core.tiling import resolve_grid

    for both in ({"TILE_SIZE": 64, "TILE_METRES": 12.8}, {"STRIDE": 32, "STRIDE_METRES": 6.4}):
        with pytest.raises(QgsProcessingException, match="in pixels .* or in metres .*, not both"):
            processing.run("rsir:build_index", {"RASTERS": [raster], "INDEX": str(tmp_path / "x"),
                                                "MODEL": str(tiny_model), **both})

    index_dir = tmp_path / "index"
    processing.run("rsir:build_index", {"RASTERS": [raster], "INDEX": str(index_dir),
                                        "MODEL": str(tiny_model), "TILE_METRES": 12.8,
                                        "STRIDE_METRES": 12.8, "DEVICE": 1})
    manifest = json.loads((index_dir / "manifest.json").read_text())
    with sqlite3.connect(index_dir / manifest["segments"][0]["catalog"]) as catalog:
        row = catalog.execute("SELECT tiling, tile_px, stride_px FROM rasters").fetchone()
    tiling, tile_px, stride_px = row
    assert (json.loads(tiling)["tile_m"], json.loads(tiling)["stride_m"]) == (12.8, 12.8)
    grid = resolve_grid(describe(town_half, None, 3), TilingParams(tile_m=12.8, stride_m=12.8), 64)
    assert (tile_px, stride_px) == (grid.tile_px, grid.stride_px) and tile_px > 100  # 0.1 m pixels
