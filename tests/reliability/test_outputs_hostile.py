"""Output files of search (--out), feedback (--save-labels) and export (--geoparquet) on hostile paths
(issue 20, items 7 and 13): a device node, a FIFO, a socket, a folder, symbolic links, the index's own
files, and a full disk. The writers share one check (core.atomic.output_target): nothing but a regular
file is ever replaced, a link to a regular file is written through (the link stays), nothing inside the
index folder is written, and a full disk is the one line "disk full: PATH".
"""
from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from rsir_qgis_plugin.core.errors import RsirError
from rsir_qgis_plugin.core.export_parquet import export_geoparquet
from rsir_qgis_plugin.core.feedback import Feedback, LabelledBox
from rsir_qgis_plugin.core.hits_io import write_hits
from rsir_qgis_plugin.core.labels_io import write_labels
from rsir_qgis_plugin.core.params import SearchParams
from rsir_qgis_plugin.core.search import search_box

from .conftest import one_line_error, run_cli, snapshot
from .test_read_only import bbox_of, mounted


@pytest.fixture
def result(built, tiny_model, two_rasters):
    return search_box(built, two_rasters[0], bbox_of(two_rasters[0]), None,
                      SearchParams(k=3, model_path=tiny_model))


def make_device(node: Path) -> Path:
    """A real character device, the same one as /dev/null (major 1, minor 3), made where a test may
    lose it: before the fix, an export onto it replaced it with a regular file."""
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    return node


@pytest.fixture
def device_node(tmp_path) -> Path:
    return make_device(tmp_path / "null")


def hostile_targets(folder: Path, suffix: str) -> dict[str, Path]:
    """Existing paths, named with the writer's suffix, that are not regular files: each must survive."""
    device = make_device(folder / f"null{suffix}")
    fifo = folder / f"fifo{suffix}"
    os.mkfifo(fifo)
    subfolder = folder / f"folder{suffix}"
    subfolder.mkdir()
    link_to_device = folder / f"link-to-device{suffix}"
    link_to_device.symlink_to(device)
    link_to_folder = folder / f"link-to-folder{suffix}"
    link_to_folder.symlink_to(subfolder)
    dangling = folder / f"dangling{suffix}"
    dangling.symlink_to(folder / "nowhere" / f"planted{suffix}")
    return {"device": device, "fifo": fifo, "folder": subfolder, "link to a device": link_to_device,
            "link to a folder": link_to_folder, "dangling link": dangling,
            "socket": folder / f"socket{suffix}"}


def kinds(paths: dict[str, Path]) -> dict[str, int]:
    return {name: os.lstat(path).st_mode for name, path in paths.items()}


def writers(result, built) -> dict[str, tuple[str, object]]:
    """Each writer of a user's output: (its suffix, a function of the path)."""
    hit = result.hits[0]
    xs, ys = [p[0] for p in hit.polygon], [p[1] for p in hit.polygon]
    labels = Feedback((LabelledBox(hit.raster, (min(xs), min(ys), max(xs), max(ys)), None, True),))
    return {
        "hits": (".gpkg", lambda path: write_hits(result, path, index_dir=built)),
        "hits as GeoJSON": (".geojson", lambda path: write_hits(result, path, index_dir=built)),
        "labels": (".gpkg", lambda path: write_labels(labels, path, index_dir=built)),
        "labels as GeoJSON": (".geojson", lambda path: write_labels(labels, path, index_dir=built)),
        "export": (".parquet", lambda path: export_geoparquet(built, path)),
    }


def test_no_writer_replaces_a_device_a_fifo_a_socket_a_folder_or_a_bad_link(tmp_path, built, result):
    for name, (suffix, write) in writers(result, built).items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        targets = hostile_targets(folder, suffix)
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(targets["socket"]))
            before = kinds(targets)
            for kind, path in targets.items():
                with pytest.raises(RsirError) as refused:
                    write(path)
                message = str(refused.value)
                assert message.startswith(f"{path}: ") and "\n" not in message, (name, kind, message)
            assert kinds(targets) == before, name
        assert not (folder / "nowhere").exists()  # the dangling link created nothing
        assert not [p for p in folder.iterdir() if ".tmp" in p.name], name


def test_a_link_to_a_regular_file_is_written_through_and_kept(tmp_path, built, result):
    for name, (suffix, write) in writers(result, built).items():
        real = tmp_path / f"real-{name.replace(' ', '-')}{suffix}"
        real.write_bytes(b"old")
        link = tmp_path / f"link-{name.replace(' ', '-')}{suffix}"
        link.symlink_to(real)
        write(link)
        assert link.is_symlink() and os.readlink(link) == str(real), name
        assert real.stat().st_size > 3, name  # the new file is at the link's target


def test_the_cli_refuses_outputs_on_a_device_and_inside_the_index(tmp_path, built, tiny_model, two_rasters,
                                                                   device_node):
    before = snapshot(built)
    catalog = next(built.glob("segments/s*/catalog.sqlite"))
    done = run_cli("index", "export", built, "--geoparquet", device_node)
    one_line_error(done, str(device_node), "is a device")
    assert stat.S_ISCHR(os.lstat(device_node).st_mode)
    for inside in (built / "manifest.json", catalog.with_suffix(".parquet")):
        one_line_error(run_cli("index", "export", built, "--geoparquet", inside), "inside the index folder")
    query = ("search", built, "--raster", two_rasters[0], "--bbox", *bbox_of(two_rasters[0]), "--model",
             tiny_model, "-k", 3)
    for out in (built / "manifest.gpkg", catalog.parent / "hits.geojson"):
        one_line_error(run_cli(*query, "--out", out), str(out), "inside the index folder")
    labels = built / "segments" / "labels.gpkg"
    one_line_error(run_cli(*query, "--save-labels", labels), str(labels), "inside the index folder")
    assert snapshot(built) == before


@contextlib.contextmanager
def full_disk():
    """A real 64 KiB tmpfs filled to the last byte (root only), always unmounted again."""
    folder = Path(tempfile.mkdtemp(prefix="rsir-full-"))
    try:
        with mounted("-t", "tmpfs", "-o", "size=64k", "tmpfs", target=folder):
            with open(folder / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
                while True:  # unbuffered: the write that finds the disk full raises here, not at close
                    filler.write(b"\0" * 4096)
            yield folder
    finally:
        folder.rmdir()


def disk_full_line(done, path: Path) -> str:
    """The run failed with 'disk full: PATH' as its last stderr line, and no traceback."""
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rsir: error: disk full: {path} "), done.stderr
    return last


def test_a_full_disk_is_one_line_for_every_output(built, tiny_model, two_rasters):
    query = ("search", built, "--raster", two_rasters[0], "--bbox", *bbox_of(two_rasters[0]), "--model",
             tiny_model, "-k", 3)
    with full_disk() as disk:
        for name in ("hits.gpkg", "hits.geojson"):
            one_line_error(run_cli(*query, "--out", disk / name), f"disk full: {disk / name} ")
        for name in ("labels.gpkg", "labels.geojson"):  # a feedback search prints its notes first
            disk_full_line(run_cli(*query, "--save-labels", disk / name), disk / name)
        one_line_error(run_cli("index", "export", built, "--geoparquet", disk / "tiles.parquet"),
                       f"disk full: {disk / 'tiles.parquet'} ")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no temporary file left behind
