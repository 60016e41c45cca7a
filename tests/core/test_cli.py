"""The headless command line, end to end in a subprocess, as a user runs it."""
import json
import subprocess
import sys
from pathlib import Path

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
