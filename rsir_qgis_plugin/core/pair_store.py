"""Stored pair embeddings: the after date's embeddings on the places of an indexed before raster, kept in the
index folder so that a second question about the same pair of dates costs no embedding.

    INDEX_DIR/pairs/<pair>.npz      <pair> = a hash of the before and the after raster's paths

One file per pair of rasters: a newer state of the pair (a changed file) replaces it under the same name,
so no stale file is left behind. The record inside holds the pair's key, a hash of everything the after
embeddings depend on (both files' path, size and mtime; the before raster's shard key, which covers its
tiling, bands, model and TTA; the after raster's bands; the model; the coverage threshold): a file whose
key is not the one the rasters give now is stale, and recomputed. Files are written whole (core/atomic:
a killed writer leaves the previous file or none) and verified when read, since a file on disk may be
damaged or edited: plain (uncompressed) zip members only, a size-limited record of the right shape, a
checksum over arrays and record, shapes that agree, finite unit vectors.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .safe_json import check_record, is_int, is_number, list_of, loads
from .store.shards import arrays_digest

PAIR_DIR = "pairs"
PAIR_FORMAT = 1
# What happened to each place: its after tile was embedded (or reused), or it was left out.
OK, NODATA, OUTSIDE = 0, 1, 2
ARRAYS = ("windows", "after_windows", "state", "vectors")
MEMBERS = {f"{name}.npy" for name in (*ARRAYS, "record", "checksum")}
RECORD_MAX_BYTES = 1 << 20  # two paths, a key and a few numbers: a few hundred bytes
UNIT_TOLERANCE = 1e-3
_NAME = re.compile(r"[0-9a-f]{24}\.npz")


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_bool(value) -> bool:
    return isinstance(value, bool)


_is_str.__name__, _is_bool.__name__ = "a string", "true or false"
_FILE = {"path": _is_str, "size": is_int, "mtime_ns": is_int}


def _is_file_record(extra: dict):
    schema = {**_FILE, **extra}

    def accepts(value) -> bool:
        return not check_record(value, schema)

    accepts.__name__ = "an object with " + ", ".join(schema)
    return accepts


RECORD_SCHEMA = {"format": is_int, "key": _is_str, "model_sha256": _is_str, "tta": _is_bool,
                 "min_coverage": is_number, "embedded": is_int, "reused": is_int,
                 "before": _is_file_record({"shard": _is_str}),
                 "after": _is_file_record({"bands": list_of(is_int)})}


class PairStoreError(ValueError):
    """A stored pair file that is unreadable or fails verification; the message names it and the check."""


@dataclass
class StoredPair:
    """The after date on each place (indexed tile) of a before raster, in the before raster's tile order."""

    windows: np.ndarray  # (n, 4) int64: the places, the before raster's tile windows (col, row, width, height)
    after_windows: np.ndarray  # (n, 4) int64: where each place was read on the after raster (zeros: OUTSIDE)
    state: np.ndarray  # (n,) uint8: OK, NODATA (at the after date) or OUTSIDE (off the after raster)
    vectors: np.ndarray  # (places OK, D) float32 unit embeddings of the after date, in place order
    record: dict  # format, key, before {path, size, mtime_ns, shard}, after {path, size, mtime_ns, bands},
    #               model_sha256, tta, min_coverage, embedded (places embedded), reused (stored index vectors)

    def checksum(self) -> str:
        digest = arrays_digest((name, getattr(self, name)) for name in ARRAYS)
        digest.update(json.dumps(self.record, sort_keys=True).encode())
        return digest.hexdigest()


def pair_name(before_path: str, after_path: str) -> str:
    """The file name of a pair of rasters (resolved paths) in INDEX_DIR/pairs."""
    identity = json.dumps([before_path, after_path]).encode("utf-8", "surrogatepass")
    return hashlib.sha256(identity).hexdigest()[:24] + ".npz"


def pair_key(before: dict, after: dict, model_sha256: str, tta: bool, min_coverage: float) -> str:
    """The hash of everything the after embeddings of a pair depend on (see the module's docstring)."""
    identity = json.dumps([PAIR_FORMAT, before, after, model_sha256, tta, min_coverage], sort_keys=True)
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def save_pair(index_dir: Path, pair: StoredPair) -> Path:
    """Write a pair file atomically (replacing the pair's previous one); returns its path."""
    verify_arrays(pair, Path(PAIR_DIR), pair.vectors.shape[1] if pair.vectors.ndim == 2 else None)
    folder = Path(index_dir) / PAIR_DIR
    if folder.is_symlink():  # rsir writes nothing outside the index folder, nor through a link in it
        raise PairStoreError(f"{folder}: is a symbolic link; rsir never writes through a link in an index folder "
                             "(remove it)")
    path = folder / pair_name(pair.record["before"]["path"], pair.record["after"]["path"])
    buffer = io.BytesIO()  # zipped in memory first, so the file is one write (see store/shards.py)
    np.savez(buffer, **{name: getattr(pair, name) for name in ARRAYS}, record=np.array(json.dumps(pair.record)),
             checksum=np.array(pair.checksum()))
    with atomic_output(path) as tmp:  # makes the folder; a full disk is one line naming the file
        tmp.write_bytes(buffer.getvalue())
    return path


def load_pair(path: Path, dim: int) -> StoredPair:
    """Read and verify a pair file; PairStoreError says what is wrong with it."""
    path = Path(path)
    if path.parent.is_symlink():
        raise PairStoreError(f"{path.parent}: is a symbolic link; rsir reads no link in an index folder")
    size = _regular_size(path)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive.infolist(), size)
        with np.load(path, allow_pickle=False) as data:
            text = str(data["record"])
            pair = StoredPair(**{name: data[name] for name in ARRAYS}, record=loads(text, max_bytes=RECORD_MAX_BYTES))
            recorded = str(data["checksum"])
    except PairStoreError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise PairStoreError(f"{path}: unreadable pair file ({str(exc)[:160]})") from exc
    problems = check_record(pair.record, RECORD_SCHEMA)
    if problems:
        raise PairStoreError(f"{path}: pair record of the wrong shape ({'; '.join(problems[:3])})")
    if recorded != pair.checksum():
        raise PairStoreError(f"{path}: pair file checksum does not match its contents (damaged or edited)")
    if path.name != pair_name(pair.record["before"]["path"], pair.record["after"]["path"]):
        raise PairStoreError(f"{path}: its record names other rasters than its file name says")
    verify_arrays(pair, path, dim)
    return pair


def verify_arrays(pair: StoredPair, path: Path, dim: int | None) -> None:
    """Shapes, kinds and values that agree: one state and two windows per place, a unit vector per OK place."""
    n = len(pair.state)
    if pair.state.dtype != np.uint8 or pair.state.ndim != 1 or not np.isin(pair.state, (OK, NODATA, OUTSIDE)).all():
        raise PairStoreError(f"{path}: place states are not a list of 0, 1 or 2")
    for name in ("windows", "after_windows"):
        array = getattr(pair, name)
        if array.dtype != np.int64 or array.shape != (n, 4):
            raise PairStoreError(f"{path}: {name} are {array.dtype} {array.shape}, not int64 ({n}, 4)")
    if (pair.windows[:, 2:] <= 0).any() or (pair.windows[:, :2] < 0).any():
        raise PairStoreError(f"{path}: a place's window is empty or starts before the raster")
    ok = int((pair.state == OK).sum())
    vectors = pair.vectors
    if vectors.dtype != np.float32 or vectors.ndim != 2 or len(vectors) != ok or (dim and vectors.shape[1] != dim):
        raise PairStoreError(f"{path}: vectors are {vectors.dtype} {vectors.shape} for {ok} places compared "
                             f"({dim}-d wanted)")
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    if not np.isfinite(vectors).all() or (np.abs(norms - 1.0) > UNIT_TOLERANCE).any():
        raise PairStoreError(f"{path}: vectors hold NaN, infinity or rows not of unit length")


def stored_pair_files(index_dir: Path) -> list[Path]:
    """The pair files of an index folder (plain files named as pair_name makes them), sorted."""
    folder = Path(index_dir) / PAIR_DIR
    if folder.is_symlink() or not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.fullmatch(p.name) and not p.is_symlink() and p.is_file())


def _regular_size(path: Path) -> int:
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise PairStoreError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise PairStoreError(f"{path}: not a plain file (rsir reads no link or device in an index folder)")
    return info.st_size


def _check_members(path: Path, members: list[zipfile.ZipInfo], size: int) -> None:
    """The members np.savez writes, stored, not compressed: so no member can expand beyond the file."""
    names = {member.filename for member in members}
    if names != MEMBERS:
        raise PairStoreError(f"{path}: holds {sorted(names)[:8]} where a pair file holds {sorted(MEMBERS)}")
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.file_size > size:
            raise PairStoreError(f"{path}: member {member.filename} is compressed or larger than the file")
