"""Writing a generation (catalog + vectors), committing it through the manifest, and checking the live one.

A generation's files are written under temporary names and renamed; the manifest, written last,
is the commit. The previous generation's files are kept one generation longer, so a reader that
read the old manifest just before a commit can still open what it names.
"""
from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, fsync_dir, is_temporary, umask_mode, write_bytes_atomic
from ..model import ModelInfo
from .catalog import tile_count, write_catalog
from .files import file_sha256, os_error_message
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, committed_files, write_manifest
from .shards import SHARD_DIR, Shard
from .vectors import choose_kind, make_faiss_index, read_vectors, serialize


def write_generation(index_dir: Path, shards: dict[str, Shard], model: ModelInfo,
                     approximate: bool | None, previous: dict | None,
                     keep_shards: frozenset[str] = frozenset()) -> dict:
    """Write catalog and vectors of a new generation, then switch the manifest to it (the commit).

    Nothing of the new generation is left behind when writing fails (a full disk, say): the
    previous generation stays live and whole.
    """
    index_dir = Path(index_dir)
    generation = _next_generation(index_dir, previous)
    ordered = sorted(shards.items(), key=lambda item: item[1].record["path"])
    dim = model.contract.embedding_dim
    vectors = (np.concatenate([s.vectors for _, s in ordered]) if ordered else np.zeros((0, dim), np.float32))
    kind = choose_kind(len(vectors), approximate)
    catalog_name, vectors_name = f"catalog-{generation}.sqlite", f"vectors-{generation}.faiss"
    written = [index_dir / catalog_name, index_dir / vectors_name]
    try:
        with atomic_path(written[0]) as tmp:
            tmp.unlink()
            write_catalog(tmp, ordered)
            os.chmod(tmp, umask_mode())  # SQLite creates its files 0644 whatever the umask
        vector_bytes = serialize(make_faiss_index(vectors, kind))
        write_bytes_atomic(written[1], vector_bytes)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "generation": generation,
            "catalog": catalog_name, "vectors": vectors_name, "index_kind": kind,
            "model": {**model.identity, "path": str(model.path)},
            "tile_count": int(len(vectors)), "raster_count": len(ordered),
            "catalog_sha256": file_sha256(written[0]),
            "vectors_bytes": len(vector_bytes), "vectors_sha256": _sha256(vector_bytes),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_manifest(index_dir, manifest)
    except (OSError, sqlite3.OperationalError) as exc:
        for path in written:
            _remove_if_possible(path)
        if isinstance(exc, sqlite3.OperationalError):
            exc = OSError(28, str(exc), str(written[0]))  # SQLite reports a full disk as 'disk is full'
        raise os_error_message(exc, index_dir, "cannot write the new index generation") from None
    remove_stale_files(index_dir, manifest, previous, set(shards) | keep_shards)
    return manifest


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _next_generation(index_dir: Path, previous: dict | None) -> int:
    """One past the live generation and past any generation file left in the folder."""
    numbers = [int(re.search(r"\d+", p.name).group()) for p in committed_files(index_dir)]
    return max([previous["generation"] if previous else 0, *numbers]) + 1


def verify_generation(index_dir: Path, manifest: dict) -> str | None:
    """What is wrong with the live generation's files, or None when they are whole.

    Reads both files through: meant for builds (a refresh must notice damage and rewrite),
    not for every search.
    """
    index_dir = Path(index_dir)
    catalog, vectors = index_dir / manifest["catalog"], index_dir / manifest["vectors"]
    for path in (catalog, vectors):
        if not path.is_file():
            return f"{path.name} is missing"
    for path, key in ((catalog, "catalog_sha256"), (vectors, "vectors_sha256")):
        if key in manifest and file_sha256(path) != manifest[key]:
            return f"{path.name} does not match the checksum the manifest recorded"
    try:
        read_vectors(vectors, manifest)
        connection = sqlite3.connect(f"{catalog.as_uri()}?mode=ro", uri=True)
        try:
            tiles = tile_count(connection, catalog)
        finally:
            connection.close()
    except Exception as exc:  # noqa: BLE001 - any failure to read the generation is damage to report
        return str(exc)
    if tiles != manifest["tile_count"]:
        return f"{catalog.name} lists {tiles} tiles where the manifest records {manifest['tile_count']}"
    return None


def remove_stale_files(index_dir: Path, manifest: dict, previous: dict | None, live_shards: set[str]) -> None:
    """After a commit: generations older than the previous one, shards no raster uses, temporary files."""
    keep = {manifest["catalog"], manifest["vectors"], MANIFEST, ".lock"}
    if previous:
        keep |= {previous["catalog"], previous["vectors"]}
    for path in index_dir.iterdir():
        if path.name not in keep and (path.name.startswith(("catalog-", "vectors-")) or is_temporary(path)):
            _remove_if_possible(path)
    shard_dir = index_dir / SHARD_DIR
    if shard_dir.is_dir():
        for path in shard_dir.iterdir():
            if path.name.endswith(".npz") and (path.name[:-4] not in live_shards or is_temporary(path)):
                _remove_if_possible(path)
    fsync_dir(index_dir)


def _remove_if_possible(path: Path) -> None:
    """Remove a file of ours; leave what cannot be removed (or is not a plain file) for later.

    Windows refuses to delete a file a reader still has open (a search of the previous
    generation): the commit is already done, so the file is left for the next build to remove.
    """
    if path.is_symlink() or not path.is_file():
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
