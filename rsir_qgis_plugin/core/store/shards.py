"""Shards: one raster's embeddings and tile geometry, the unit of resume and of repair.

    INDEX_DIR/shards/<key>.npz          a finished raster
    INDEX_DIR/shards/<key>.partial.npz  the checkpoint of a raster an interrupted build was embedding
    INDEX_DIR/shards/<key>.block-<first>-<end>.npz  one finished block of a raster embedded in blocks
                                        (core/blocks.py): windows first..end-1; joined into <key>.npz
                                        when the raster's last block is done, then removed
    INDEX_DIR/shards/<key>.block-<first>-<end>.partial.npz  a block's checkpoint

A shard records a checksum of its arrays and one of its record (the raster's size, CRS, transform,
bands...) when written and is verified when read, so a damaged, truncated or edited shard is
recomputed rather than silently indexed. Shards of rsir before the record checksum are read as
they are (re-embedding an archive on upgrade would cost hours), but their record must pass its
schema and agree with the shard's own geometry: each tile's stored bounds must be its window under
the recorded transform, which catches an edited geotransform.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..safe_json import check_record, is_int, is_number, list_of, loads, optional

SHARD_DIR = "shards"
ARRAYS = ("vectors", "windows", "bounds", "bounds_4326")
RECORD_MAX_BYTES = 16 << 20  # a record holds a CRS WKT and a few lists: kilobytes

_TILING_KEYS = {"tile_px": optional(is_int), "tile_m": optional(is_number), "stride_px": optional(is_int),
                "stride_m": optional(is_number), "bands": optional(list_of(is_int)),
                "min_valid_fraction": is_number}


def tiling_problems(tiling) -> list[str]:
    """What is wrong with a tiling record (TilingParams.as_record(): an unknown key would break it)."""
    if not isinstance(tiling, dict):
        return ["'tiling' should be an object"]
    problems = [f"'tiling.{key}' is not a tiling setting" for key in tiling if key not in _TILING_KEYS]
    return problems + [f"'tiling.{key}' should be {getattr(check, '__name__', '')}"
                       for key, check in _TILING_KEYS.items() if key in tiling and not check(tiling[key])]


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_transform(value) -> bool:
    return isinstance(value, list) and len(value) in (6, 9) and all(is_number(v) for v in value)


_is_str.__name__, _is_transform.__name__ = "a string", "a list of 6 or 9 numbers"
RECORD_SCHEMA = {"path": _is_str, "size": is_int, "mtime_ns": is_int, "crs_wkt": _is_str, "width": is_int,
                 "height": is_int, "transform": _is_transform, "bands": list_of(is_int),
                 "stretch": optional(list_of(list_of(is_number, 2))), "tiling": lambda v: isinstance(v, dict),
                 "tile_px": is_int, "stride_px": is_int, "skipped": is_int}
RECORD_OPTIONAL = {"model_sha256": _is_str, "tta": lambda v: isinstance(v, bool), "next_window": is_int,
                   "block": list_of(is_int, 2)}  # a block shard's [first, end) window range
BLOCK_MARK = ".block-"  # in the names of block shards, which are not a raster's shard


class ShardError(ValueError):
    """A shard file that is unreadable or fails verification; the message says which check failed."""


@dataclass
class Shard:
    """One raster's embeddings with the geometry of each tile and the raster's record."""

    vectors: np.ndarray  # (n, D) float32, unit length
    windows: np.ndarray  # (n, 4) int64: col, row, width, height
    bounds: np.ndarray  # (n, 4) float64 in the raster CRS: xmin, ymin, xmax, ymax
    bounds_4326: np.ndarray  # (n, 4) float64: lon_min, lat_min, lon_max, lat_max (NaN without CRS)
    record: dict  # the raster: fingerprint, size, CRS, transform, bands, stretch, tiling, counts, model

    def checksum(self) -> str:
        return arrays_digest((name, getattr(self, name)) for name in ARRAYS).hexdigest()

    def save(self, path: Path) -> None:
        self.verify_shape(path)
        record = json.dumps(self.record)
        # Zipped in memory first: a zip writer whose file fails mid-way (a full disk) raises again
        # from its finaliser, long after the error was reported.
        buffer = io.BytesIO()
        np.savez(buffer, vectors=self.vectors, windows=self.windows, bounds=self.bounds,
                 bounds_4326=self.bounds_4326, record=np.array(record),
                 checksum=np.array(self.checksum()), record_sha256=np.array(_text_sha256(record)))
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path, dim: int | None = None) -> Shard:
        """Read and verify a shard; ShardError says what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise ShardError(f"{path}: not a file")
        try:
            with np.load(path, allow_pickle=False) as data:
                text = str(data["record"])
                record_sha256 = str(data["record_sha256"]) if "record_sha256" in data.files else None
                if record_sha256 is not None and record_sha256 != _text_sha256(text):
                    raise ShardError(f"{path}: shard record does not match its checksum (edited or damaged)")
                shard = cls(vectors=data["vectors"], windows=data["windows"], bounds=data["bounds"],
                            bounds_4326=data["bounds_4326"], record=loads(text, max_bytes=RECORD_MAX_BYTES))
                recorded = str(data["checksum"]) if "checksum" in data.files else None
        except ShardError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ShardError(f"{path}: unreadable shard ({exc})") from exc
        problems = (check_record(shard.record, RECORD_SCHEMA, RECORD_OPTIONAL)
                    or tiling_problems(shard.record["tiling"]))
        if problems:
            raise ShardError(f"{path}: shard record of the wrong shape ({'; '.join(problems[:3])})")
        shard.verify_shape(path, dim)
        # Shards of rsir before checksums pass on their shape checks alone: re-embedding a user's
        # whole archive on upgrade would cost hours.
        if recorded is not None and recorded != shard.checksum():
            raise ShardError(f"{path}: shard checksum does not match its contents")
        shard.verify_geometry(path)
        return shard

    def verify_shape(self, path: Path, dim: int | None = None) -> None:
        n = len(self.windows)
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
            raise ShardError(f"{path}: vectors are {self.vectors.dtype} {self.vectors.shape}, not float32 (n, D)")
        if dim is not None and self.vectors.shape[1] != dim:
            raise ShardError(f"{path}: {self.vectors.shape[1]}-d vectors where the model gives {dim}-d")
        shapes = {name: getattr(self, name).shape for name in ("windows", "bounds", "bounds_4326")}
        if len(self.vectors) != n or any(shape != (n, 4) for shape in shapes.values()):
            raise ShardError(f"{path}: {len(self.vectors)} vectors for {n} tile windows "
                             f"(shapes {dict(vectors=self.vectors.shape, **shapes)})")
        if not np.isfinite(self.vectors).all():
            raise ShardError(f"{path}: vectors hold NaN or infinity")

    def verify_geometry(self, path: Path) -> None:
        """The record agrees with the arrays: windows inside the raster, bounds = windows under the transform.

        This is what catches an edited record in a shard written before records had a checksum.
        """
        if not len(self.windows):
            return
        record, windows = self.record, self.windows.astype(np.float64)
        col, row, width, height = windows.T
        if (col < 0).any() or (row < 0).any() or (col + width > record["width"]).any() or (
                row + height > record["height"]).any() or (width <= 0).any() or (height <= 0).any():
            raise ShardError(f"{path}: tile windows lie outside the recorded {record['width']} x "
                             f"{record['height']} raster (the record or the windows are damaged)")
        a, b, c, d, e, f = record["transform"][:6]
        corners = ((col, row), (col + width, row), (col + width, row + height), (col, row + height))
        xs = np.stack([a * x + b * y + c for x, y in corners])
        ys = np.stack([d * x + e * y + f for x, y in corners])
        expected = np.stack([xs.min(0), ys.min(0), xs.max(0), ys.max(0)], axis=1)
        pixel = max(abs(a) + abs(b), abs(d) + abs(e), 1e-300)
        if not np.allclose(self.bounds, expected, rtol=1e-9, atol=1e-3 * pixel):
            raise ShardError(f"{path}: tile bounds do not match the recorded geotransform "
                             "(the record or the bounds are damaged)")


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def shard_path(index_dir: Path, key: str) -> Path:
    return Path(index_dir) / SHARD_DIR / f"{key}.npz"


def partial_path(index_dir: Path, key: str) -> Path:
    return Path(index_dir) / SHARD_DIR / f"{key}.partial.npz"


def block_key(key: str, first: int, end: int) -> str:
    """The name of a raster's block of windows first..end-1: shard_path/partial_path of it are its files."""
    return f"{key}{BLOCK_MARK}{first}-{end}"


def block_files(index_dir: Path, key: str) -> list[Path]:
    """The block shards and block checkpoints of the raster with shard key `key` (plain files only)."""
    directory = Path(index_dir) / SHARD_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{key}{BLOCK_MARK}*.npz") if p.is_file() and not p.is_symlink())


def finished_shard_files(index_dir: Path) -> list[Path]:
    """Every finished raster shard file (regular files only: a stray directory or link is not a shard; a
    block is part of a raster still being embedded)."""
    directory = Path(index_dir) / SHARD_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.name.endswith(".npz") and not p.name.endswith(".partial.npz") and BLOCK_MARK not in p.name
                  and not p.name.startswith(".") and p.is_file() and not p.is_symlink())


def joined_shard(blocks: list[Shard]) -> Shard:
    """A raster's shard from its block shards, in window order: the arrays end to end, the record the
    raster's (without the block range), its skipped tiles summed. The blocks must be of one raster."""
    first = blocks[0].record
    same = {key: value for key, value in first.items() if key not in ("block", "skipped", "next_window")}
    for block in blocks[1:]:
        if any(block.record.get(key) != value for key, value in same.items()):
            raise ShardError(f"block {block.record.get('block')} of {first['path']} records another raster "
                             "or embedding than its first block")
    record = {**same, "skipped": sum(block.record["skipped"] for block in blocks)}
    arrays = {name: np.concatenate([getattr(block, name) for block in blocks]) for name in ARRAYS}
    return Shard(record=record, **arrays)


def arrays_digest(arrays: Iterable[tuple[str, np.ndarray]]):
    """A sha256 over named arrays: each name, dtype and shape as well as the bytes, so an array renamed,
    retyped or reshaped with the same bytes does not pass. Returned open, for a record to be added."""
    digest = hashlib.sha256()
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest
