"""The headless command line, end to end in a subprocess, as a user runs it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

ROOT = Path(__file__).resolve().parents[2]


def rsir(*args, check=True):
    done = subprocess.run([sys.executable, "-m", "rsir_qgis_plugin", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_build_info_search_end_to_end(tmp_path, tiny_model, town_crop):
    index = tmp_path / "idx"
    built = rsir("index", "build", index, town_crop, "--model", tiny_model, "--tile-metres", "9.6",
                 "--stride", "48", "--batch-size", "8")
    assert "49 tiles in" in built.stdout and "tiles/s" in built.stdout

    info = rsir("index", "info", index)
    assert "49 tiles from 1 raster(s)" in info.stdout and "resnet18-untrained-test" in info.stdout

    with rasterio.open(town_crop) as src:
        left, top = src.transform * (96, 96)
        right, bottom = src.transform * (192, 192)
    found = rsir("search", index, "--raster", town_crop, "--bbox", left, bottom, right, top, "-k", "5")
    collection = json.loads(found.stdout)
    assert [f["properties"]["rank"] for f in collection["features"]] == [1, 2, 3, 4, 5]
    assert set(collection["features"][0]["properties"]) == {"rank", "score", "raster"}

    out = tmp_path / "hits.gpkg"
    rsir("search", index, "--raster", town_crop, "--bbox", left, bottom, right, top, "--out", out)
    assert out.exists()


def test_errors_exit_non_zero_with_one_clear_line(tmp_path, tiny_model):
    missing_index = rsir("index", "info", tmp_path / "nowhere", check=False)
    assert missing_index.returncode == 1
    assert missing_index.stderr.strip().splitlines() == [
        f"rsir: error: {tmp_path / 'nowhere'}: no rsir index here (no manifest.json); build one first"]
    bad_model = rsir("index", "build", tmp_path / "idx", "--model", tmp_path / "missing.onnx", check=False)
    assert bad_model.returncode == 1 and "missing.onnx: model file not found" in bad_model.stderr


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model):
    """A crop of the town raster (EPSG:3395), indexed once for the module's searches."""
    from rasterio.windows import Window, transform

    from tests.conftest import town_pixels, write_raster

    folder = tmp_path_factory.mktemp("cli")
    pixels, profile = town_pixels()
    crop = write_raster(folder / "crop.tif", pixels[:, 256:448, 512:704].copy(), crs=profile["crs"],
                        transform=transform(Window(512, 256, 192, 192), profile["transform"]))
    rsir("index", "build", folder / "idx", crop, "--model", tiny_model, "--tile-size", "96", "--stride", "48")
    with rasterio.open(crop) as src:
        left, top = src.transform * (48, 48)
        right, bottom = src.transform * (144, 144)
        bounds = tuple(src.bounds)
    return folder, folder / "idx", crop, (left, bottom, right, top), bounds


def one_error_line(done) -> str:
    """The single stderr line of a failed command (no GDAL/PROJ 'ERROR 1:' lines, no traceback)."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsir: error: "), done.stderr
    return lines[0]


def test_box_in_the_wrong_crs_is_one_line_naming_raster_box_and_crs(indexed):
    _, index, crop, box, _ = indexed
    done = rsir("search", index, "--raster", crop, "--bbox", *box, "--crs", "EPSG:4326", check=False)
    line = one_error_line(done)
    assert "NaN" not in line and str(crop) in line and f"{box[0]:.1f}" in line
    assert "in EPSG:4326 has no position in the raster's CRS (EPSG:3395)" in line


def test_box_in_degrees_without_crs_suggests_it(indexed):
    _, index, crop, box, _ = indexed
    from rasterio.warp import transform_bounds

    degrees = transform_bounds("EPSG:3395", "EPSG:4326", *box)
    line = one_error_line(rsir("search", index, "--raster", crop, "--bbox", *degrees, check=False))
    assert line.endswith("the box looks like longitude/latitude: give its CRS, --crs EPSG:4326")
    assert rsir("search", index, "--raster", crop, "--bbox", *degrees, "--crs", "EPSG:4326").returncode == 0


def test_gdal_and_proj_messages_do_not_leak_but_end_up_in_the_line(indexed):
    _, index, crop, box, _ = indexed
    line = one_error_line(rsir("search", index, "--raster", crop, "--bbox", *box, "--crs", "EPSG:99999",
                               check=False))
    # PROJ's reason was an "ERROR 1: PROJ: ..." line of its own; it now closes rsir's line. Its wording
    # varies with the PROJ version ("crs not found" gained a suffix in PROJ 9.6), so only its place is checked.
    assert line.startswith("rsir: error: unknown coordinate reference system 'EPSG:99999' (GDAL: PROJ: ")
    assert line.endswith(")")
    line = one_error_line(rsir("search", index, "--raster", crop, "--bbox", *box, "--out-crs", "EPSG:99999",
                               check=False))
    assert "'EPSG:99999'" in line


# nan and inf are usage errors now, refused where argparse reads them: tests/reliability/test_cli_numbers.py
@pytest.mark.parametrize("bbox, message", [
    (("1", "2", "1", "3"), "has zero area (XMIN equals XMAX); a query needs an area"),
    (("3", "2", "1", "4"), "is inverted"),
])
def test_a_box_without_area_or_numbers_is_one_line(indexed, bbox, message):
    _, index, crop, _, _ = indexed
    assert message in one_error_line(rsir("search", index, "--raster", crop, "--bbox", *bbox, check=False))


def test_search_with_a_missing_index_a_file_as_index_or_a_missing_raster(indexed, tmp_path):
    _, index, crop, box, _ = indexed
    missing = one_error_line(rsir("search", tmp_path / "nowhere", "--raster", crop, "--bbox", *box,
                                  check=False))
    assert missing == (f"rsir: error: {tmp_path / 'nowhere'}: no such index directory; "
                       "build an index there first")
    (tmp_path / "file").write_text("x")
    a_file = one_error_line(rsir("search", tmp_path / "file", "--raster", crop, "--bbox", *box, check=False))
    assert a_file == f"rsir: error: {tmp_path / 'file'}: is a file, not an rsir index directory"
    gone = one_error_line(rsir("search", index, "--raster", tmp_path / "gone.tif", "--bbox", *box,
                               check=False))
    assert gone == f"rsir: error: {tmp_path / 'gone.tif'}: not found (no such file)"


def test_crs_given_for_a_raster_without_one_is_refused(indexed, tmp_path):
    _, index, crop, box, _ = indexed
    from tests.conftest import write_raster

    with rasterio.open(crop) as src:
        plain = write_raster(tmp_path / "plain.tif", src.read(), crs=None, transform=src.transform)
    line = one_error_line(rsir("search", index, "--raster", plain, "--bbox", *box, "--crs", "EPSG:3395",
                               check=False))
    assert line == (f"rsir: error: {plain}: has no CRS, so a box in EPSG:3395 cannot be placed on it; "
                    "give --bbox in the raster's own coordinates and leave out --crs")
    assert rsir("search", index, "--raster", plain, "--bbox", *box).returncode == 0


def test_a_box_whose_every_tile_overlaps_the_query_says_so(indexed):
    _, index, crop, _, bounds = indexed
    done = rsir("search", index, "--raster", crop, "--bbox", *bounds)
    assert json.loads(done.stdout)["features"] == []
    assert done.stderr.strip().splitlines() == [(
        "rsir: warning: every indexed tile overlaps the query box, so none is left once the query area is "
        "excluded; use --keep-overlap to see them, or index more rasters")]
    # The model's own ranking: re-ranked, the central tile may come first and NMS then thins the rest away.
    kept = rsir("search", index, "--raster", crop, "--bbox", *bounds, "--keep-overlap", "-k", "3", "--no-rerank")
    assert len(json.loads(kept.stdout)["features"]) == 3 and kept.stderr == ""


def test_build_exit_status_tells_partial_and_total_failure(indexed, tiny_model, tmp_path):
    _, _, crop, _, _ = indexed
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    index = tmp_path / "idx"
    partial = rsir("index", "build", index, crop, bad, "--model", tiny_model, "--tile-size", "96",
                   check=False)
    assert partial.returncode == 3, partial.stderr
    assert f"{bad}: not a readable raster" in partial.stdout
    warning = partial.stderr.strip().splitlines()[-1]
    assert warning.startswith("rsir: warning: 1 raster(s) failed (listed above)")
    assert "(exit status 3)" in warning
    failed = rsir("index", "build", tmp_path / "idx2", bad, "--model", tiny_model, "--tile-size", "96",
                  check=False)
    assert failed.returncode == 1 and "rsir: error: " in failed.stderr and str(bad) in failed.stderr


def test_a_query_raster_not_in_the_index_is_searched_with_a_note(indexed, tmp_path):
    import shutil

    _, index, crop, box, _ = indexed
    copy = Path(shutil.copy(crop, tmp_path / "not_indexed.tif"))
    # every tile of this 3x3 grid shares a quarter or more of the query's tile: with NMS, one place
    done = rsir("search", index, "--raster", copy, "--bbox", *box, "-k", "2", "--keep-overlap")
    assert len(json.loads(done.stdout)["features"]) == 1
    assert done.stderr.strip().splitlines() == [
        f"rsir: note: {copy} is not in the index; its box was embedded with the bands chosen by colour "
        "interpretation (R, G, B, else 1-3)"]


def tile_arg(crop, col, row, size=96):
    with rasterio.open(crop) as src:
        left, top = src.transform * (col, row)
        right, bottom = src.transform * (col + size, row + size)
    return f"{crop}:{left},{bottom},{right},{top}"


def test_feedback_search_saves_its_labels_and_a_reload_gives_the_same_hits(indexed, tmp_path):
    _, index, crop, _, _ = indexed
    labels = tmp_path / "labels.gpkg"
    first = rsir("search", index, "--positive", tile_arg(crop, 0, 0), "--positive", tile_arg(crop, 96, 0),
                 "--negative", tile_arg(crop, 0, 96), "--negative", tile_arg(crop, 96, 96), "--keep-overlap",
                 "-k", "4", "--save-labels", labels)
    hits = json.loads(first.stdout)["features"]  # 5 tiles are left, which overlap each other (NMS)
    assert hits and [f["properties"]["rank"] for f in hits] == list(range(1, len(hits) + 1))
    assert all(0 < f["properties"]["score"] < 1 for f in hits)
    assert first.stderr.strip().splitlines() == [
        "rsir: note: ranked by a classifier (scores are its probability) of 2 positive and 2 negative "
        "example(s)",
        f"4 labelled boxes written to {labels}"]
    again = rsir("search", index, "--labels", labels, "--keep-overlap", "-k", "4")
    assert json.loads(again.stdout)["features"] == hits
    # a label on the command line wins over the file's for the same box: now 3 positives, 1 negative
    turned = rsir("search", index, "--labels", labels, "--positive", tile_arg(crop, 0, 96), "--keep-overlap",
                  "-k", "4", "--save-labels", tmp_path / "turned.geojson")
    assert "of 3 positive and 1 negative example(s)" in turned.stderr
    saved = json.loads((tmp_path / "turned.geojson").read_text())["features"]
    assert sorted(f["properties"]["label"] for f in saved) == ["negative", "positive", "positive", "positive"]


def test_a_query_box_with_a_negative_is_refined_by_rocchio(indexed):
    _, index, crop, box, _ = indexed
    done = rsir("search", index, "--raster", crop, "--bbox", *box, "--negative", tile_arg(crop, 96, 96),
                "--keep-overlap", "-k", "3")
    assert len(json.loads(done.stdout)["features"]) == 3
    assert done.stderr.strip() == ("rsir: note: ranked by the mean of the examples (scores are cosine "
                                   "similarities) of 1 positive and 1 negative example(s)")


@pytest.mark.parametrize("args, message", [
    (("--positive", "crop.tif"), "--positive 'crop.tif': expected RASTER:XMIN,YMIN,XMAX,YMAX"),
    (("--positive", "crop.tif:1,2,3"), "expected 4 numbers XMIN,YMIN,XMAX,YMAX after the raster, got 3"),
    (("--negative", "crop.tif:1,2,x,4"), "--negative 'crop.tif:1,2,x,4': 'x' is not a number"),
    (("--positive", ":1,2,3,4"), "no raster before the ':'"),
    (("--positive", "{crop}:3,2,1,4"), "is inverted"),
    (("--positive", "{tmp}/gone.tif:1,2,3,4"), "gone.tif: not found (no such file) (positive example 1)"),
    (("--negative", "{tile}"), "needs at least one positive box"),
    (("--positive", "{tile}", "--image", "{crop}"), "give either --image or labelled boxes"),
    (("--positive", "{tile}", "--save-labels", "{tmp}/l.shp"), "unsupported labels format '.shp'"),
    (("--labels", "{tmp}/none.gpkg"), "none.gpkg: no such labels file"),
    (("--positive", "{tile}", "--crs", "EPSG:99999"), "unknown coordinate reference system 'EPSG:99999'"),
])
def test_bad_feedback_input_is_one_clear_line(indexed, tmp_path, args, message):
    _, index, crop, _, _ = indexed
    filled = [a.format(crop=crop, tmp=tmp_path, tile=tile_arg(crop, 0, 0)) for a in args]
    assert message in one_error_line(rsir("search", index, *filled, check=False))
