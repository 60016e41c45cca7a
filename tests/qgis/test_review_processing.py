"""rsir:estimate_precision through processing.run: a marked review sample of a real map file gives the
engine's estimate as a table and outputs, and the marks as a labels file; an unmarked sample is refused."""
from __future__ import annotations

import pytest
from qgis.core import QgsProcessingException

from rsir_qgis_plugin.core.labels_io import read_labels
from rsir_qgis_plugin.core.map_io import read_map
from rsir_qgis_plugin.core.review import draw_sample
from rsir_qgis_plugin.core.review_io import sample_review, write_review
from tests.core.test_review_cli import write_tile_map


def test_estimate_precision_reports_the_engines_estimate_and_writes_labels(provider, tmp_path):
    import processing

    map_path, raster = write_tile_map(tmp_path)
    polygons = read_map(map_path).polygons
    review = sample_review(read_map(map_path), draw_sample([p.score_max for p in polygons],
                                                           [p.map_id for p in polygons], 12, seed=2))
    for position, item in enumerate(review.items):
        if position != 5:  # one left unmarked
            review = review.with_mark(position, item.map_id % 4 != 0)
    sample = write_review(review, tmp_path / "marked.geojson")
    labels = tmp_path / "labels.gpkg"
    result = processing.run("rsir:estimate_precision", {"SAMPLE": str(sample), "LABELS_OUT": str(labels),
                                                        "OUTPUT": "memory:"})
    want = review.estimate()
    assert (result["PRECISION"], result["LOW"], result["HIGH"], result["REVIEWED"]) == pytest.approx(
        (want.precision, want.low, want.high, 11))
    rows = sorted(([f[name] for name in ("stratum", "polygons", "reviewed", "relevant", "precision", "low95",
                                         "high95")] for f in result["OUTPUT"].getFeatures()), key=lambda r: r[0])
    assert rows[0] == pytest.approx([0, 30, 11, want.relevant, want.precision, want.low, want.high])
    assert rows[1:] == [pytest.approx([part.stratum.number, 10, part.reviewed, part.relevant, part.precision,
                                       part.low, part.high]) for part in want.strata]
    back = read_labels(labels)
    assert len(back.boxes) == 11 and sum(b.positive for b in back.boxes) == want.relevant
    assert {b.raster for b in back.boxes} == {str(raster)}

    plain = processing.run("rsir:estimate_precision", {"SAMPLE": str(sample), "OUTPUT": "memory:"})
    assert plain["PRECISION"] == pytest.approx(want.precision) and not plain.get("LABELS_OUT")

    unmarked = write_review(sample_review(read_map(map_path), draw_sample([0.5, 0.6], [1, 2], 2)),
                            tmp_path / "unmarked.gpkg")
    with pytest.raises(QgsProcessingException, match="no polygon is marked yet"):
        processing.run("rsir:estimate_precision", {"SAMPLE": str(unmarked), "OUTPUT": "memory:"})
