"""Shards: one raster's embeddings and tile geometry, the unit of resume and of repair.

    INDEX_DIR/shards/<key>.npz          a finished raster
    INDEX_DIR/shards/<key>.partial.npz  the checkpoint of a raster an interrupted build was embedding

A shard records a checksum of its arrays when written and is verified when read, so a damaged
or truncated shard is recomputed rather than silently indexed.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic

SHARD_DIR = "shards"
ARRAYS = ("vectors", "windows", "bounds", "bounds_4326")


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
        digest = hashlib.sha256()
        for name in ARRAYS:
            array = np.ascontiguousarray(getattr(self, name))
            digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def save(self, path: Path) -> None:
        self.verify_shape(path)
        # Zipped in memory first: a zip writer whose file fails mid-way (a full disk) raises again
        # from its finaliser, long after the error was reported.
        buffer = io.BytesIO()
        np.savez(buffer, vectors=self.vectors, windows=self.windows, bounds=self.bounds,
                 bounds_4326=self.bounds_4326, record=np.array(json.dumps(self.record)),
                 checksum=np.array(self.checksum()))
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path, dim: int | None = None) -> "Shard":
        """Read and verify a shard; ShardError says what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise ShardError(f"{path}: not a file")
        try:
            with np.load(path, allow_pickle=False) as data:
                shard = cls(vectors=data["vectors"], windows=data["windows"], bounds=data["bounds"],
                            bounds_4326=data["bounds_4326"], record=json.loads(str(data["record"])))
                recorded = str(data["checksum"]) if "checksum" in data.files else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ShardError(f"{path}: unreadable shard ({exc})") from exc
        shard.verify_shape(path, dim)
        # Shards of rsir before checksums pass on their shape checks alone: re-embedding a user's
        # whole archive on upgrade would cost hours.
        if recorded is not None and recorded != shard.checksum():
            raise ShardError(f"{path}: shard checksum does not match its contents")
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


def shard_path(index_dir: Path, key: str) -> Path:
    return Path(index_dir) / SHARD_DIR / f"{key}.npz"


def partial_path(index_dir: Path, key: str) -> Path:
    return Path(index_dir) / SHARD_DIR / f"{key}.partial.npz"


def finished_shard_files(index_dir: Path) -> list[Path]:
    """Every finished shard file (regular files only: a stray directory or link is not a shard)."""
    directory = Path(index_dir) / SHARD_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.name.endswith(".npz") and not p.name.endswith(".partial.npz")
                  and not p.name.startswith(".") and p.is_file() and not p.is_symlink())
