"""Nothing outside the index folder is written, truncated or deleted through a link planted inside it
(issue 20 items 4, 5, 6): a linked .lock, shards/, segments/ or segment is refused with one line."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rsir_qgis_plugin.core.builder import build_index
from rsir_qgis_plugin.core.errors import IndexStoreError
from rsir_qgis_plugin.core.store import repair_index

from .conftest import one_line_error, params, run_cli, snapshot


def user_file(folder: Path, name: str, text: str = "the user's own work\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_lock_linked_to_a_file_outside_is_refused_and_the_file_untouched(tmp_path, built, tiny_model, link):
    precious = user_file(tmp_path / "home", "notes.txt")
    (built / ".lock").unlink()
    (os.symlink if link == "symbolic" else os.link)(precious, built / ".lock")
    before = snapshot(built)
    with pytest.raises(IndexStoreError, match=r"\.lock: (is a symbolic link|a hard link)"):
        build_index(params(built, [], tiny_model))
    with pytest.raises(IndexStoreError, match=r"\.lock"):
        repair_index(built, tiny_model)
    one_line_error(run_cli("index", "compact", built, "--model", tiny_model), ".lock", "link")
    assert precious.read_text() == "the user's own work\n"
    assert snapshot(built) == before


def test_a_new_index_whose_lock_is_a_link_to_nowhere_creates_nothing_through_it(tmp_path, tiny_model,
                                                                               town_crop):
    index, target = tmp_path / "idx", tmp_path / "home" / "created-by-rsir"
    index.mkdir()
    target.parent.mkdir()
    os.symlink(target, index / ".lock")  # dangling: O_CREAT would create the target
    with pytest.raises(IndexStoreError, match="symbolic link"):
        build_index(params(index, [town_crop], tiny_model))
    assert not target.exists()


def test_shards_linked_to_a_user_folder_is_refused_and_its_npz_files_kept(tmp_path, built, tiny_model,
                                                                         two_rasters):
    user = tmp_path / "experiments"
    user.mkdir()
    np.savez(user / "results.npz", scores=np.arange(5))
    for shard in (built / "shards").iterdir():  # the user moved the index's shards there, and linked it
        shutil.move(shard, user / shard.name)
    (built / "shards").rmdir()
    os.symlink(user, built / "shards")
    kept = sorted(p.name for p in user.iterdir())
    line = one_line_error(run_cli("index", "compact", built, "--model", tiny_model), "shards",
                          "symbolic link")
    assert str(built / "shards") in line
    with pytest.raises(IndexStoreError, match="symbolic link"):
        build_index(params(built, two_rasters[:1], tiny_model, force=True))
    with pytest.raises(IndexStoreError, match="symbolic link"):
        repair_index(built, tiny_model)
    fresh = tmp_path / "fresh"  # a new index whose shards/ is planted as a link before its first build
    fresh.mkdir()
    os.symlink(user, fresh / "shards")
    with pytest.raises(IndexStoreError, match="symbolic link"):
        build_index(params(fresh, two_rasters[:1], tiny_model))
    assert sorted(p.name for p in user.iterdir()) == kept


@pytest.mark.parametrize("what", ["segments", "segment"])
def test_segments_linked_to_a_user_folder_are_refused_and_nothing_in_it_deleted(tmp_path, built, tiny_model,
                                                                                what):
    user = tmp_path / "thesis"
    thesis = user_file(user / "s7", "thesis.tex", "\\documentclass{book}\n")
    segments = built / "segments"
    if what == "segments":  # segments/ itself a link to the user's folder, the index's segment moved there
        for segment in segments.iterdir():
            shutil.move(segment, user / segment.name)
        segments.rmdir()
        os.symlink(user, segments)
    else:  # a segment-like name inside segments/ linking to the user's folder
        os.symlink(user / "s7", segments / "s7")
    line = one_line_error(run_cli("index", "compact", built, "--model", tiny_model), "symbolic link")
    assert "segments" in line
    with pytest.raises(IndexStoreError, match="symbolic link"):
        build_index(params(built, [], tiny_model, compact=True))
    with pytest.raises(IndexStoreError, match="symbolic link"):
        repair_index(built, tiny_model)
    assert thesis.read_text() == "\\documentclass{book}\n"
    assert sorted(p.name for p in user.iterdir())[-1] == "s7"
