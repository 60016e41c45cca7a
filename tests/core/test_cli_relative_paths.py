"""The command line with paths relative to the working directory, as a user types them."""
import subprocess
import sys


def test_build_info_and_search_take_relative_paths(tmp_path, tiny_model, town_crop):
    import rasterio

    def rsir(*args):
        done = subprocess.run([sys.executable, "-m", "rsir_qgis_plugin", *map(str, args)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    raster = town_crop.relative_to(tmp_path)
    rsir("index", "build", "idx", raster, "--model", tiny_model, "--stride", "64", "--batch-size", "8")
    # `index info` opened the catalog through a file URI, which a relative path cannot be.
    assert "tiles from 1 raster(s)" in rsir("index", "info", "idx").stdout
    with rasterio.open(town_crop) as src:
        left, top = src.transform * (96, 96)
        right, bottom = src.transform * (192, 192)
    assert '"rank": 1' in rsir("search", "idx", "--raster", raster, "--bbox", left, bottom, right, top).stdout
