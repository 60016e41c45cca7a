"""Bands, dtypes, stretch and nodata handling on real GeoTIFFs; damaged and hostile paths."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from rasterio.enums import ColorInterp

from rsir_qgis_plugin.core.errors import RasterError, RasterMissingError
from rsir_qgis_plugin.core.params import TilingParams
from rsir_qgis_plugin.core.raster import (
    Fingerprint,
    RasterSource,
    describe,
    fingerprint,
    open_dataset,
    resolve_raster_path,
)
from rsir_qgis_plugin.core.tiling import read_tiles, read_window, resolve_grid, tile_windows
from tests.conftest import TOWN_RASTER, town_pixels, write_raster


def test_rgb_is_found_by_colour_interpretation_in_any_band_order(tmp_path):
    pixels, _ = town_pixels()
    bgr_nir = np.concatenate([pixels[::-1, 512:640, 512:640], pixels[:1, 512:640, 512:640]])
    path = write_raster(tmp_path / "bgrn.tif", bgr_nir,
                        colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined])
    assert describe(path, None, 3).bands == (3, 2, 1)


def test_explicit_bands_and_their_errors(tmp_path):
    pixels, _ = town_pixels()
    four = np.concatenate([pixels[:, 512:576, 512:576], pixels[:1, 512:576, 512:576]])
    path = write_raster(tmp_path / "four.tif", four)
    assert describe(path, (4, 3, 2), 3).bands == (4, 3, 2)
    with pytest.raises(RasterError, match=r"four.tif: has 4 band\(s\); band\(s\) \[7\] requested"):
        describe(path, (7, 3, 2), 3)
    with pytest.raises(RasterError, match="2 band.* requested but the model takes 3"):
        describe(path, (1, 2), 3)


def test_grey_raster_feeds_its_band_to_every_channel(tmp_path):
    pixels, _ = town_pixels()
    path = write_raster(tmp_path / "grey.tif", pixels[:1, 512:576, 512:576].copy())
    source = describe(path, None, 3)
    assert source.bands == (1, 1, 1)
    with open_dataset(path) as ds:
        tile, valid = read_window(ds, source, (0, 0, 64, 64), 32)
    assert tile.shape == (3, 32, 32) and valid == 1.0
    assert np.array_equal(tile[0], tile[1]) and np.array_equal(tile[1], tile[2])


def test_uint16_is_stretched_by_2_98_percentiles(tmp_path):
    pixels, _ = town_pixels()
    wide = (pixels[:, 512:768, 512:768].astype(np.uint16) * 37 + 1000)
    path = write_raster(tmp_path / "u16.tif", wide)
    source = describe(path, None, 3)
    low, high = source.stretch[0]
    assert low == pytest.approx(np.percentile(wide[0], 2), rel=0.02)
    assert high == pytest.approx(np.percentile(wide[0], 98), rel=0.02)
    with open_dataset(path) as ds:
        tile, _ = read_window(ds, source, (0, 0, 256, 256), 256)
    assert tile.dtype == np.uint8
    # About 2 % of pixels clip at each end, the rest spreads over the range.
    assert 0.005 < (tile[0] == 0).mean() < 0.05 and 0.005 < (tile[0] == 255).mean() < 0.05


def test_float_raster_with_nodata_value_excludes_nodata_from_stretch_and_skips_nodata_tiles(tmp_path):
    pixels, _ = town_pixels()
    data = pixels[:, 512:768, 512:768].astype(np.float32) / 255.0
    data[:, :128, :] = -9999.0  # top half is nodata
    path = write_raster(tmp_path / "f32.tif", data, nodata=-9999.0)
    source = describe(path, None, 3)
    assert 0.0 <= source.stretch[0][0] < source.stretch[0][1] <= 1.0
    grid = resolve_grid(source, TilingParams(tile_px=64, stride_px=64), 32)
    with open_dataset(path) as ds:
        kept = {w[1] for w, tile in read_tiles(ds, source, tile_windows(256, 256, grid), 32, 0.5)
                if tile is not None}
    assert kept == {128, 192}  # only the rows of the valid bottom half


def test_alpha_band_masks_and_is_not_fed_to_the_model(tmp_path):
    pixels, _ = town_pixels()
    rgba = np.concatenate([pixels[:, 512:640, 512:640], np.full((1, 128, 128), 255, np.uint8)])
    rgba[3, :, :64] = 0  # left half transparent
    path = write_raster(tmp_path / "rgba.tif", rgba,
                        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha])
    source = describe(path, None, 3)
    assert source.bands == (1, 2, 3)
    with open_dataset(path) as ds:
        _, valid = read_window(ds, source, (0, 0, 128, 128), 32)
    assert valid == pytest.approx(0.5)


def test_flat_tiles_are_skipped_as_empty(tmp_path):
    pixels, _ = town_pixels()
    data = pixels[:, 512:640, 512:640].copy()
    data[:, :, :64] = 0  # black fill, not declared nodata (as in the bundled sample's corner)
    path = write_raster(tmp_path / "black.tif", data)
    source = describe(path, None, 3)
    with open_dataset(path) as ds:
        kept = [w for w, tile in read_tiles(ds, source, [(0, 0, 64, 64), (64, 0, 64, 64)], 32, 0.5)
                if tile is not None]
    assert kept == [(64, 0, 64, 64)]


def test_broken_file_is_a_raster_error_naming_it(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(TOWN_RASTER.read_bytes()[:300])
    with pytest.raises(RasterError) as caught:
        describe(path, None, 3)
    assert "broken.tif" in str(caught.value)


def openers(path):
    """Every way the engine reaches a raster file, each of which must be protected."""
    return {"resolve_raster_path": lambda: resolve_raster_path(path),
            "fingerprint": lambda: fingerprint(path),
            "open_dataset": lambda: open_dataset(path).close(),
            "describe": lambda: describe(path, None, 3)}


def test_a_symlink_loop_is_one_raster_error_not_a_crash(tmp_path):
    itself = tmp_path / "itself.tif"
    itself.symlink_to(itself)
    there, back = tmp_path / "there.tif", tmp_path / "back.tif"
    there.symlink_to(back)
    back.symlink_to(there)
    for path in (itself, there):
        for name, opener in openers(path).items():
            with pytest.raises(RasterError, match=f"{path.name}: symlink loop") as caught:
                opener()
            assert not isinstance(caught.value, RasterMissingError), name


def test_a_fifo_named_tif_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    outcome = {}

    def open_it():
        try:
            describe(fifo, None, 3)
        except Exception as exc:  # noqa: BLE001 - the test checks the type
            outcome["error"] = exc

    reader = threading.Thread(target=open_it, daemon=True)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # unblock the reader stuck in open() before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO named .tif blocked")
    assert isinstance(outcome.get("error"), RasterError)
    assert str(outcome["error"]) == f"{fifo}: not a regular file (a FIFO)"
    for _name, opener in openers(fifo).items():
        with pytest.raises(RasterError, match=r"not a regular file \(a FIFO\)"):
            opener()


def test_directories_and_devices_named_like_rasters_are_refused(tmp_path):
    folder = tmp_path / "folder.tif"
    folder.mkdir()
    for path, kind in ((folder, "a directory"), (Path("/dev/null"), "a character device")):
        for opener in openers(path).values():
            with pytest.raises(RasterError, match=f"not a regular file \\({kind}\\)"):
                opener()


def test_only_a_file_gone_from_disk_is_a_raster_missing_error(tmp_path):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all" * 100)
    dangling = tmp_path / "dangling.tif"
    dangling.symlink_to(tmp_path / "deleted.tif")
    for path in (tmp_path / "never.tif", dangling, garbage / "inside.tif"):
        for _name, opener in openers(path).items():
            with pytest.raises(RasterMissingError, match=f"{path.name}: gone from disk"):
                opener()
    with pytest.raises(RasterError, match="garbage.tif: not a readable raster") as caught:
        describe(garbage, None, 3)
    assert not isinstance(caught.value, RasterMissingError)


def test_links_and_home_are_resolved_to_the_real_file(tmp_path, monkeypatch):
    real = tmp_path / "real.tif"
    shutil.copy(TOWN_RASTER, real)
    link = tmp_path / "link.tif"
    link.symlink_to(real)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_raster_path(link) == str(real.resolve())
    assert resolve_raster_path("~/link.tif") == str(real.resolve())
    assert describe("~/link.tif", None, 3).path == str(real.resolve())


DESCRIBE_AND_REPORT = """
import sys
from rsir_qgis_plugin.core.errors import RasterError, RasterMissingError
from rsir_qgis_plugin.core.raster import describe
try:
    describe(sys.argv[1], None, 3)
except RasterMissingError as exc:
    print("missing:", exc)
except RasterError as exc:
    print("raster error:", exc)
else:
    print("opened")
"""


def run_describe(path, env=None, user=None) -> str:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}

    def drop_privileges():
        os.setgid(user)
        os.setuid(user)

    done = subprocess.run([sys.executable, "-c", DESCRIBE_AND_REPORT, str(path)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=drop_privileges if user is not None else None)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_raster_whose_gdal_driver_is_unavailable_is_kept_as_a_plain_raster_error(tmp_path):
    raster = tmp_path / "town.tif"
    shutil.copy(TOWN_RASTER, raster)
    assert run_describe(raster) == "opened"
    report = run_describe(raster, env={"GDAL_SKIP": "GTiff"})
    assert report.startswith(f"raster error: {raster}: not a readable raster (")


def test_an_unreadable_raster_is_a_plain_raster_error_with_the_reason(tmp_path):
    if os.geteuid() != 0:
        raster = tmp_path / "locked.tif"
        shutil.copy(TOWN_RASTER, raster)
        raster.chmod(0)
        with pytest.raises(RasterError, match=r"locked.tif: cannot be read \(Permission denied\)") as caught:
            describe(raster, None, 3)
        assert not isinstance(caught.value, RasterMissingError)
        return
    # As root, permissions do not stop reads: read as an unprivileged user in a child process.
    nobody = 65534
    with tempfile.TemporaryDirectory(prefix="rsir-perm-") as folder:
        os.chmod(folder, 0o755)
        raster = Path(folder) / "locked.tif"
        shutil.copy(TOWN_RASTER, raster)
        os.chmod(raster, 0o644)
        try:
            readable = run_describe(raster, user=nobody)
        except (PermissionError, AssertionError) as exc:
            pytest.skip(f"cannot run a child process as an unprivileged user here ({exc})")
        assert readable == "opened"
        os.chmod(raster, 0)
        expected = f"raster error: {raster}: cannot be read (Permission denied)"
        assert run_describe(raster, user=nobody) == expected


def test_a_truncated_geotiff_is_a_raster_error_naming_it_mid_read(tmp_path):
    truncated = tmp_path / "half.tif"
    shutil.copy(TOWN_RASTER, truncated)
    os.truncate(truncated, truncated.stat().st_size // 2)
    source = describe(truncated, None, 3)  # the header and first strips are intact
    grid = resolve_grid(source, TilingParams(tile_px=256, stride_px=256), 32)
    read = []
    with open_dataset(truncated) as ds:
        damaged = r"half.tif: pixels in window \(.*\) cannot be read \("
        with pytest.raises(RasterError, match=damaged) as caught:
            for window, _ in read_tiles(ds, source, tile_windows(source.width, source.height, grid), 32, 0.5):
                read.append(window)
    assert 0 < len(read) < 16 and "\n" not in str(caught.value)
    wide = tmp_path / "u16.tif"
    pixels, _ = town_pixels()
    write_raster(wide, pixels.astype(np.uint16) * 37)
    os.truncate(wide, wide.stat().st_size // 2)
    with pytest.raises(RasterError, match="u16.tif: pixels cannot be read"):
        describe(wide, None, 3)  # the stretch's sample read meets the missing blocks


def test_a_crs_without_metric_size_refuses_tile_sizes_in_metres(tmp_path):
    local = 'LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    source = RasterSource(fingerprint=Fingerprint(str(tmp_path / "site.tif"), 1, 1), width=512, height=512,
                          crs_wkt=local, transform=(0.5, 0.0, 0.0, 0.0, -0.5, 0.0), bands=(1, 2, 3),
                          stretch=None)
    with pytest.raises(RasterError, match="site.tif: its CRS has no known size in metres"):
        resolve_grid(source, TilingParams(tile_m=50.0), 64)
    assert resolve_grid(source, TilingParams(tile_px=100), 64).tile_px == 100
