"""Hostile labels files (issue 20, items 8 and 16): rasters named by a labels file that would make GDAL
reach the network (checked with a real TCP listener on 127.0.0.1), bad geometry per feature (a NaN
coordinate, an empty polygon, a CRS that PROJ cannot apply), and files large enough to show a
quadratic step (20,000 features) or over the cap (100,001).
"""
from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rasterio

from benchmarks.labels_gpkg import write_labels_gpkg
from rsir_qgis_plugin.core.errors import RsirError
from rsir_qgis_plugin.core.labels_io import load_labels

from .conftest import ROOT, one_line_error, run_cli

WAIT_S = 3.0  # how long the listener waits for a late request once the command is done


class Listener:
    """A real TCP server on 127.0.0.1 that records every connection made to it (none are answered)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(1.0)
                try:
                    self.requests.append(connection.recv(4096))
                except OSError:
                    self.requests.append(b"")

    def close(self, wait: float = WAIT_S) -> list[bytes]:
        """The requests received, after waiting `wait` seconds for late ones."""
        time.sleep(wait)
        self._stop.set()
        self._thread.join()
        self.server.close()
        return self.requests


@pytest.fixture
def listener():
    server = Listener()
    yield server
    if not server._stop.is_set():
        server.close(wait=0)


def box_ring(xmin: float, ymin: float, xmax: float, ymax: float) -> list[tuple[float, float]]:
    return [(xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin)]


def quarter(raster: Path, column: int = 0) -> tuple[float, float, float, float]:
    """The box of the raster's top row of quarters, `column` quarters from the left, in its CRS."""
    with rasterio.open(raster) as dataset:
        left, bottom, right, top = dataset.bounds
    width, height = (right - left) / 4, (top - bottom) / 4
    return left + column * width, top - height, left + (column + 1) * width, top


def vrt(path: Path, raster: Path, source: str) -> Path:
    """A real VRT with the raster's size and georeferencing whose three bands read `source`."""
    with rasterio.open(raster) as dataset:
        transform = ", ".join(repr(v) for v in dataset.transform.to_gdal())
        size, crs = dataset.width, dataset.crs.to_wkt()
    bands = "".join(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
                    f'<SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>{b}</SourceBand>'
                    f"</SimpleSource></VRTRasterBand>" for b in (1, 2, 3))
    path.write_text(f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{crs.replace("<", "")}</SRS>'
                    f"<GeoTransform>{transform}</GeoTransform>{bands}</VRTDataset>")
    return path


def test_rasters_named_by_a_labels_file_never_reach_the_network(tmp_path, built, tiny_model, two_rasters,
                                                                 listener):
    raster = two_rasters[0]
    url = f"http://127.0.0.1:{listener.port}"
    remote = vrt(tmp_path / "remote.vrt", raster, f"/vsicurl/{url}/remote.tif")
    nested = vrt(tmp_path / "nested.vrt", raster, str(remote))
    wms = tmp_path / "service.xml"
    wms.write_text(f"<GDAL_WMS><Service name=\"WMS\"><ServerUrl>{url}/wms?</ServerUrl><Layers>a</Layers>"
                   "</Service><DataWindow><UpperLeftX>-180</UpperLeftX><UpperLeftY>90</UpperLeftY>"
                   "<LowerRightX>180</LowerRightX><LowerRightY>-90</LowerRightY><SizeX>400</SizeX>"
                   "<SizeY>200</SizeY></DataWindow></GDAL_WMS>")
    box = box_ring(*quarter(raster, 2))
    hostile = [str(remote), str(nested), str(wms), f"/vsicurl/{url}/direct.tif", f"{url}/plain.tif",
               f"/vsizip//vsicurl/{url}/a.zip/a.tif", f"WMS:{url}/wms"]
    features = [(str(raster), "positive", box_ring(*quarter(raster, 0)))]
    features += [(name, "positive", box) for name in hostile]
    labels = write_labels_gpkg(tmp_path / "hostile.gpkg", features, epsg=3395)

    read = load_labels(labels)
    done = run_cli("search", built, "--labels", labels, "--model", tiny_model, "-k", 3)
    # Before: the search read the VRT's pixels, and GDAL sent HEAD /remote.tif and GET / here.
    assert listener.close() == [], f"rsir sent requests to the address a labels file named: {done.stderr}"
    assert [box.raster for box in read.feedback.boxes] == [str(raster)]
    assert len(read.skipped) == len(hostile), read.skipped
    assert all("may name local raster files only" in line for line in read.skipped), read.skipped
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("local raster files only; left out") == len(hostile), done.stderr


def test_bad_geometry_is_left_out_per_feature_with_its_reason(tmp_path, built, tiny_model, two_rasters):
    raster = two_rasters[0]
    with rasterio.open(raster) as dataset:
        assert dataset.crs.to_epsg() == 3395
    from rasterio.warp import transform_bounds

    good = box_ring(*transform_bounds("EPSG:3395", "EPSG:4326", *quarter(raster, 0)))
    nan = [(math.nan, good[0][1])] + good[1:]
    metres = box_ring(*quarter(raster, 1))  # metres written into a layer that says degrees (latitude 1.6e6)
    features = [(str(raster), "positive", good), (str(raster), "negative", nan),
                (str(raster), "negative", None), (str(raster), "negative", metres)]
    labels = write_labels_gpkg(tmp_path / "bad-geometry.gpkg", features, epsg=4326)

    read = load_labels(labels)
    assert len(read.feedback.boxes) == 1 and read.feedback.boxes[0].positive
    assert [line.split(":")[0] for line in read.skipped] == ["feature 2", "feature 3", "feature 4"]
    assert "not a finite number" in read.skipped[0]
    assert "no polygon geometry" in read.skipped[1]
    assert "does not reproject to its raster's CRS (EPSG:3395)" in read.skipped[2], read.skipped
    done = run_cli("search", built, "--labels", labels, "--model", tiny_model, "-k", 3)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("; left out") == 3, done.stderr


@pytest.mark.slow  # labels files of many features
def test_a_large_labels_file_is_read_in_linear_time(tmp_path, two_rasters):
    """20,000 distinct boxes: the one-label-per-box merge was quadratic (about 4 minutes here before; a
    200,000-feature file never finished). The times are printed, not asserted; a run that does not end
    within 10 minutes fails."""
    raster = two_rasters[0]
    xmin, ymin, xmax, ymax = quarter(raster, 0)
    step = (xmax - xmin) / 40_000
    features = [(str(raster), "positive" if i % 2 else "negative",
                 box_ring(xmin + i * step, ymin, xmax + i * step, ymax)) for i in range(20_000)]
    labels = write_labels_gpkg(tmp_path / "large.gpkg", features, epsg=3395)
    script = ("import sys, time; from rsir_qgis_plugin.core.feedback import Feedback;"
              "from rsir_qgis_plugin.core.labels_io import load_labels;"
              "t = time.perf_counter(); read = load_labels(sys.argv[1]); loaded = time.perf_counter();"
              "boxes = Feedback().merged(read.feedback).latest().boxes;"  # what the CLI and the search do
              "print(len(boxes), f'load {loaded - t:.2f} s, merge {time.perf_counter() - loaded:.2f} s')")
    done = subprocess.run([sys.executable, "-c", script, str(labels)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    print(f"20,000 labels: {done.stdout.strip()}")
    assert done.stdout.split()[0] == "20000"


@pytest.mark.slow  # a labels file past the 100,000 cap
def test_more_labels_than_the_cap_are_refused_in_one_line(tmp_path, built, tiny_model, two_rasters):
    raster = two_rasters[0]
    ring = box_ring(*quarter(raster, 0))
    labels = write_labels_gpkg(tmp_path / "huge.gpkg", [(str(raster), "positive", ring)] * 100_001,
                               epsg=3395)
    with pytest.raises(RsirError, match="holds 100,001 features; a labels file may hold at most 100,000"):
        load_labels(labels)
    one_line_error(run_cli("search", built, "--labels", labels, "--model", tiny_model), str(labels),
                   "at most 100,000")
