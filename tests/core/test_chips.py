"""`rsir export-chips` (core/chips.py): each labelled box of a labels file as a georeferenced GeoTIFF chip read
as a query box is, in a folder per class with chips.csv and chips.json, written atomically; the folders it
refuses. On the real town crop indexed with the tiny real ONNX model (64 px input)."""
import hashlib
import json

import numpy as np
import pytest
import rasterio

from rsir_qgis_plugin.core.chips import ChipParams, choose_per_class, export_chips
from rsir_qgis_plugin.core.chips_folder import read_csv
from rsir_qgis_plugin.core.errors import Cancelled, RasterError, RsirError
from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox
from rsir_qgis_plugin.core.labels_io import write_labels
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.query_step import box_window, index_reader, model_for, read_box
from tests.conftest import indexed_town_crop
from tests.core.test_cli import rsir


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model):
    """(index, raster, labels file): three tiles of the index and one drawn box, 2 positive and 2 negative."""
    folder = tmp_path_factory.mktemp("chips")
    index, raster = indexed_town_crop(folder, tiny_model)
    with rasterio.open(raster) as src:
        transform = src.transform

    def box(col, row, width, height):
        return rasterio.windows.bounds(rasterio.windows.Window(col, row, width, height), transform)

    boxes = (LabelledBox(str(raster), box(0, 0, 96, 96), None, True),  # a tile
             LabelledBox(str(raster), box(48, 48, 96, 96), None, False),  # a tile
             LabelledBox(str(raster), box(200, 100, 150, 90), None, True),  # drawn: no tile, not square
             LabelledBox(str(raster), box(288, 288, 96, 96), None, False))
    labels = write_labels(Feedback(boxes), folder / "labels.gpkg")
    return index, raster, labels, boxes


def test_each_box_becomes_a_georeferenced_chip_of_what_the_model_sees(indexed, tmp_path):
    index, raster, labels, boxes = indexed
    out = tmp_path / "chips"
    summary = export_chips(ChipParams(index, labels, out))
    assert summary.counts == {"positive": 2, "negative": 2} and summary.chip_size == 64
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "chips.csv", "chips.json", "negative", "negative/00002.tif", "negative/00004.tif", "positive",
        "positive/00001.tif", "positive/00003.tif"]
    rows = read_csv(out / "chips.csv")
    assert [(r.file, r.label) for r in rows] == [("positive/00001.tif", "positive"), ("negative/00002.tif", "negative"),
                                                 ("positive/00003.tif", "positive"), ("negative/00004.tif", "negative")]
    reader = index_reader(index)
    model = model_for(reader, SearchParams())
    with rasterio.open(raster) as src:
        raster_crs = src.crs
    for row, box in zip(rows, boxes):
        assert row.raster == str(raster) and row.crs == raster_crs.to_string()
        # The box as a query box reads it: the same window, the same pixels at the model's input size.
        source, window = box_window(reader, model, box.raster, box.bbox, None)
        assert (row.col, row.row, row.width, row.height) == window
        with rasterio.open(out / row.file) as chip:
            assert (chip.count, chip.width, chip.height, chip.dtypes[0]) == (3, 64, 64, "uint8")
            assert chip.crs == raster_crs
            # Georeferenced on the box's ground: its bounds are the window's, whatever the resampling.
            assert tuple(chip.bounds) == pytest.approx((row.xmin, row.ymin, row.xmax, row.ymax), abs=1e-6)
            assert tuple(chip.bounds) == pytest.approx(box.bbox, abs=1e-6)
            np.testing.assert_array_equal(chip.read(), read_box(source, window, 64, box.bbox))
    manifest = json.loads((out / "chips.json").read_text())
    assert manifest["labels"] == {"file": "labels.gpkg", "path": str(labels),
                                  "sha256": hashlib.sha256(labels.read_bytes()).hexdigest()}
    assert manifest["model"]["name"] == "resnet18-untrained-test" and manifest["counts"] == summary.counts


def test_per_class_is_a_seeded_choice_within_each_class():
    boxes = tuple(LabelledBox("r.tif", (i, 0, i + 1, 1), None, i % 3 == 0) for i in range(30))
    chosen = choose_per_class(boxes, 4, seed=1)
    assert [box.positive for _, box in chosen].count(True) == 4 and len(chosen) == 8
    assert [n for n, _ in chosen] == sorted(n for n, _ in chosen)  # in label order
    assert chosen == choose_per_class(boxes, 4, seed=1)
    assert chosen != choose_per_class(boxes, 4, seed=2)
    assert len(choose_per_class(boxes, 0, seed=1)) == 30 == len(choose_per_class(boxes, 100, seed=1))


def test_the_command_writes_the_chips_and_refuses_a_folder_it_did_not_write(indexed, tmp_path):
    index, _, labels, _ = indexed
    out = tmp_path / "chips"
    done = rsir("export-chips", index, "--labels", labels, "--out", out, "--per-class", "1")
    assert "2 chips written to" in done.stdout and "1 positive, 1 negative (of 2 positive, 2 negative" in done.stdout
    assert len(read_csv(out / "chips.csv")) == 2
    # An earlier chips folder is replaced whole.
    rsir("export-chips", index, "--labels", labels, "--out", out)
    assert len(read_csv(out / "chips.csv")) == 4 and len(list(out.glob("*/*.tif"))) == 4
    # A folder holding anything else is refused in one line, and left as it was.
    (out / "notes.txt").write_text("mine")
    done = rsir("export-chips", index, "--labels", labels, "--out", out, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "neither empty nor a chips folder rsir wrote" in done.stderr
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.glob("*/*.tif"))) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["chips"]  # no temporary folder left beside it
    done = rsir("export-chips", index, "--labels", labels, "--out", tmp_path / "none", "--per-class", "0",
                check=False)
    assert done.returncode == 2 and "--per-class (chips of each class) must be at least 1" in done.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("where, message", [
    ("file", "exists and is not a folder"),
    ("index", "inside the index folder"),
    ("user", "neither empty nor a chips folder"),
])
def test_folders_that_are_refused(indexed, tmp_path, where, message):
    index, _, labels, _ = indexed
    out = {"file": tmp_path / "f.txt", "index": index / "chips", "user": tmp_path / "user"}[where]
    if where == "file":
        out.write_text("x")
    if where == "user":
        out.mkdir()
        (out / "positive").mkdir()
        (out / "positive" / "photo.jpg").write_bytes(b"x")
        (out / "chips.json").write_text(json.dumps({"format": "rsir-chips"}))
    with pytest.raises(RsirError, match=message):
        export_chips(ChipParams(index, labels, out))
    assert not (index / "chips").exists()


def test_an_empty_folder_is_used_and_a_failure_or_cancel_leaves_the_earlier_chips(indexed, tmp_path):
    index, raster, labels, boxes = indexed
    out = tmp_path / "chips"
    out.mkdir()
    export_chips(ChipParams(index, labels, out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # A box off its raster: one line naming the label, and nothing replaced.
    bad = write_labels(Feedback(boxes + (LabelledBox(str(raster), (0.0, 0.0, 1.0, 1.0), None, True),)),
                       tmp_path / "bad.geojson")
    with pytest.raises(RasterError, match=r"does not overlap the raster.*\(label 5, positive\)"):
        export_chips(ChipParams(index, bad, out))
    with pytest.raises(Cancelled):
        export_chips(ChipParams(index, labels, out, per_class=1), is_cancelled=lambda: True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.geojson", "chips"]


def test_labels_without_a_positive_are_refused(indexed, tmp_path):
    index, _, _, boxes = indexed
    negatives = write_labels(Feedback(tuple(b for b in boxes if not b.positive)), tmp_path / "neg.gpkg")
    with pytest.raises(RsirError, match="holds no positive box"):
        export_chips(ChipParams(index, negatives, tmp_path / "chips"))
    assert not (tmp_path / "chips").exists()
