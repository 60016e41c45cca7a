"""Standing searches against real indexes: saved, re-run by the next build on the rasters it added only,
refused for another model, skipped when damaged (the build stands), names checked; and the CLI end to end."""
import json
import shutil

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window, transform

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import RsirError
from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox, search_feedback
from rsir_qgis_plugin.core.params import BuildParams, SearchParams, TilingParams
from rsir_qgis_plugin.core.search import search_box
from rsir_qgis_plugin.core.standing import list_searches, load_search, save_search
from rsir_qgis_plugin.core.standing_file import check_name
from rsir_qgis_plugin.core.store import shared_reader
from tests.conftest import town_pixels, write_raster, write_town_crop

TILING = TilingParams(tile_px=96, stride_px=48)


def write_other_crop(folder, row=512, col=0):
    """folder/town_other.tif: another 384x384 real crop of the town raster (other ground than town_crop)."""
    pixels, profile = town_pixels()
    return write_raster(folder / "town_other.tif", pixels[:, row:row + 384, col:col + 384].copy(),
                        crs=profile["crs"], transform=transform(Window(col, row, 384, 384), profile["transform"]))


def build(index, rasters, model):
    return build_index(BuildParams(index_dir=index, rasters=tuple(rasters), model_path=model, tiling=TILING))


def box_of(raster, col, row, size):
    with rasterio.open(raster) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + size, row + size)
    return left, bottom, right, top


def hits_in(path):
    from osgeo import ogr

    source = ogr.Open(str(path))
    layer = source.GetLayerByName("rsir_hits")
    rows = [(f.GetField("rank"), f.GetField("score"), f.GetField("raster")) for f in layer]
    source = None
    return rows


@pytest.fixture
def first(tmp_path, tiny_model):
    raster = write_town_crop(tmp_path)
    build(tmp_path / "idx", [raster], tiny_model)
    return tmp_path / "idx", raster


def test_a_standing_search_reports_hits_only_from_a_raster_added_after_it_was_saved(tmp_path, first, tiny_model):
    index, raster = first
    # k=10: a search of the whole index after the build would return 4 tiles of `raster` among its 10 best
    params = SearchParams(k=10)
    result = search_box(index, raster, box_of(raster, 96, 96, 96), None, params)
    assert result.hits and all(hit.raster == str(raster) for hit in result.hits)
    save_search(index, "solar farms", result, params)

    other = write_other_crop(tmp_path)
    summary = build(index, [raster, other], tiny_model)
    [report] = summary.standing
    assert report.problem is None and report.new_rasters == 1 and report.new_hits >= 6
    assert f"{report.new_hits} new hits for 'solar farms'" in summary.describe()
    rows = hits_in(index / "searches" / "solar farms.new.gpkg")
    assert [r[0] for r in rows] == list(range(1, report.new_hits + 1))
    assert {r[2] for r in rows} == {str(other)}  # never the raster it was saved on
    everything = search_box(index, raster, box_of(raster, 96, 96, 96), None, params).hits
    assert any(hit.raster == str(raster) for hit in everything)  # which a search of the whole index returns
    # Scored as saved: the cosine of the stored (αQE-expanded) query with the new tiles' stored vectors
    saved = load_search(index, "solar farms")
    reader = shared_reader(index)
    new_ids = reader.raster_tile_ids([e.id for e in reader.rasters.values() if e.path == str(other)])
    best = float(np.max(reader.vectors(new_ids, augmented=saved.augmented) @ saved.query))
    assert rows[0][1] == pytest.approx(best, abs=1e-5)

    # Seen now: the next build adds nothing and reports nothing, and the new hits stay for the analyst
    again = build(index, [raster, other], tiny_model)
    assert again.standing == [] and "new hit" not in again.describe()
    assert len(hits_in(index / "searches" / "solar farms.new.gpkg")) == report.new_hits


def test_a_saved_feedback_classifier_scores_new_tiles_by_its_probability(tmp_path, first, tiny_model):
    index, raster = first
    hits = search_box(index, raster, box_of(raster, 96, 96, 96), None, SearchParams(k=8, rerank=False)).hits

    def labelled(hit, positive):
        xs, ys = zip(*hit.polygon)
        return LabelledBox(raster=hit.raster, bbox=(min(xs), min(ys), max(xs), max(ys)), crs=None, positive=positive)

    feedback = Feedback((labelled(hits[0], True), labelled(hits[1], True), labelled(hits[-1], False),
                         labelled(hits[-2], False)))
    params = SearchParams(k=4)
    result = search_feedback(index, feedback, params)
    assert result.scoring == "probability"
    save_search(index, "cars", result, params)
    saved = load_search(index, "cars")
    assert saved.kind == "feedback" and saved.weights is not None and len(saved.examples) == 4

    other = write_other_crop(tmp_path)
    [report] = build(index, [raster, other], tiny_model).standing
    rows = hits_in(index / "searches" / "cars.new.gpkg")
    assert report.new_hits == len(rows) == 4 and {r[2] for r in rows} == {str(other)}
    reader = shared_reader(index)
    new_ids = reader.raster_tile_ids([e.id for e in reader.rasters.values() if e.path == str(other)])
    logits = reader.vectors(new_ids).astype(np.float64) @ saved.weights.astype(np.float64) + saved.bias
    assert rows[0][1] == pytest.approx(float(np.max(1 / (1 + np.exp(-logits)))), abs=1e-5)


def test_a_search_saved_with_another_model_is_refused_with_one_line(tmp_path, first, tiny_model, other_model):
    index, raster = first
    params = SearchParams(k=3)
    save_search(index, "roofs", search_box(index, raster, box_of(raster, 96, 96, 96), None, params), params)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    build(elsewhere / "idx", [write_town_crop(elsewhere)], other_model)
    (elsewhere / "idx" / "searches").mkdir()
    shutil.copy(index / "searches" / "roofs.json", elsewhere / "idx" / "searches")

    summary = build(elsewhere / "idx", [elsewhere / "town_crop.tif", write_other_crop(elsewhere)], other_model)
    [report] = summary.standing
    assert report.problem and "saved with model 'resnet18-untrained-test'" in report.problem
    line = [t for t in summary.describe().splitlines() if "roofs" in t]
    assert line == [f"standing search 'roofs' skipped: {report.problem}"]
    assert not (elsewhere / "idx" / "searches" / "roofs.new.gpkg").exists()


@pytest.mark.parametrize("damage", [b"{not json", b'{"format": 1}', "query", "name", b"[" * 100000])
def test_a_damaged_saved_search_is_skipped_with_a_note_and_the_build_succeeds(tmp_path, first, tiny_model, damage):
    index, raster = first
    params = SearchParams(k=3)
    result = search_box(index, raster, box_of(raster, 96, 96, 96), None, params)
    save_search(index, "good", result, params)
    save_search(index, "bad", result, params)
    bad = index / "searches" / "bad.json"
    if isinstance(damage, bytes):
        bad.write_bytes(damage)
    else:
        record = json.loads(bad.read_text())
        record[damage] = [1.0, 2.0] if damage == "query" else "../elsewhere"
        bad.write_text(json.dumps(record))

    summary = build(index, [raster, write_other_crop(tmp_path)], tiny_model)
    assert summary.tiles_total > 49 and not summary.failed  # committed
    reports = {r.name: r for r in summary.standing}
    assert reports["good"].new_hits == 3
    assert reports["bad"].problem.startswith(f"{bad}: damaged saved search (")
    assert "\n" not in reports["bad"].problem
    assert [listing.name for listing in list_searches(index) if listing.problem] == ["bad"]


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "x\\y", "", " lead", ".hidden", "n" * 65, "nul",
                                  "tab\there"])
def test_names_that_are_not_safe_file_names_are_refused(first, name):
    index, raster = first
    with pytest.raises(RsirError, match="search name"):
        check_name(name)
    params = SearchParams(k=3)
    with pytest.raises(RsirError, match="search name"):
        save_search(index, name, search_box(index, raster, box_of(raster, 96, 96, 96), None, params), params)
    assert not (index / "searches").exists() or not any((index / "searches").iterdir())


def test_names_people_use_are_accepted():
    for name in ("solar farms", "cars_2020", "v1.2-final", "Été"):
        assert check_name(name) == name
