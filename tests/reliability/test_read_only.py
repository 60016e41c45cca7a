"""A read-only index location is one line naming the index folder given and the real reason (issue 19,
item 12): a file system mounted read-only (EROFS) is not "no permission", and a folder the user may not
write in is named itself, not a subfolder rsir would have made in it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import NOBODY, one_line_error, run_cli, snapshot

TILE = ("--tile-size", 96, "--stride", 96)


@contextlib.contextmanager
def mounted(*mount_args: str, target: Path):
    """A real mount (root only), always unmounted again."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a file system")
    done = subprocess.run(["mount", *mount_args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


@pytest.fixture
def read_only_mount():
    """An empty 1 MB tmpfs mounted read-only (a read-only share, a DVD, a locked-down USB stick)."""
    folder = Path(tempfile.mkdtemp(prefix="rsir-ro-"))
    try:
        with mounted("-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", target=folder):
            yield folder
    finally:
        folder.rmdir()


def error_line(done: subprocess.CompletedProcess, index: Path) -> str:
    """The one error line, which must name the index folder given, and no subfolder of it."""
    line = one_line_error(done)
    assert line.startswith(f"rsir: error: {index}: "), line
    assert f"{index}/" not in line, line  # not .../shards, not .../.lock
    return line


def test_a_read_only_file_system_is_named_as_such(read_only_mount, tiny_model, town_crop):
    for index in (read_only_mount, read_only_mount / "new-idx"):  # the mount itself; a folder to create in it
        line = error_line(run_cli("index", "build", index, town_crop, "--model", tiny_model, *TILE), index)
        assert "read-only file system" in line and "permission" not in line, line


def test_an_index_on_a_read_only_mount_refuses_a_build_and_still_answers_searches(tmp_path, tiny_model,
                                                                                    town_crop):
    index = tmp_path / "idx"
    assert run_cli("index", "build", index, town_crop, "--model", tiny_model, *TILE).returncode == 0
    before = snapshot(index)
    view = tmp_path / "ro-view"
    view.mkdir()
    with mounted("--bind", "-o", "ro", str(index), target=view):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)  # older mounts ignore ro
        line = error_line(run_cli("index", "build", view, town_crop, "--model", tiny_model, *TILE), view)
        assert "read-only file system" in line, line
        done = run_cli("search", view, "--raster", town_crop, "--bbox", *bbox_of(town_crop), "-k", 3,
                       "--model", tiny_model)
        assert done.returncode == 0 and len(json.loads(done.stdout)["features"]) == 3, done.stderr
    assert snapshot(index) == before


def bbox_of(raster: Path) -> tuple[float, float, float, float]:
    import rasterio

    with rasterio.open(raster) as dataset:
        left, bottom, right, top = dataset.bounds
    return left, top - (top - bottom) / 4, left + (right - left) / 4, top


def test_a_folder_without_write_permission_is_named_itself(shared_folder, tiny_model, town_crop):
    model = shutil.copy(tiny_model, shared_folder / "model.onnx")
    raster = shutil.copy(town_crop, shared_folder / "a.tif")
    locked = shared_folder / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)  # mkdir's mode is masked by the umask
    # An existing folder the user may not write in: named itself, with the reason (not ".../shards").
    line = error_line(run_cli("index", "build", locked, raster, "--model", model, user=NOBODY), locked)
    assert f"no write permission on {locked}" in line, line
    # A folder to create in it: named as given, and the folder that refuses it.
    index = locked / "new-idx"
    line = error_line(run_cli("index", "build", index, raster, "--model", model, user=NOBODY), index)
    assert "cannot create the index folder" in line and f"no write permission on {locked}" in line, line
    assert not any(locked.iterdir())
