"""The manifest: the commit point of an index. It names the live generation's files and what they hold.

    INDEX_DIR/manifest.json   replaced atomically; a build is committed when it is written
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..atomic import write_bytes_atomic
from ..errors import IndexStoreError

FORMAT = "rsir-index"
FORMAT_VERSION = 2  # 2: checksums and sizes of the generation's files
MANIFEST = "manifest.json"
INDEX_KINDS = ("flat", "ivf")
_FILE_NAMES = {"catalog": re.compile(r"catalog-\d+\.sqlite"), "vectors": re.compile(r"vectors-\d+\.faiss")}
_REQUIRED = {"generation": int, "catalog": str, "vectors": str, "index_kind": str, "model": dict,
             "tile_count": int, "raster_count": int, "built_at": str}
_MODEL_REQUIRED = {"name": str, "sha256": str, "embedding_dim": int}


def recovery_advice(index_dir: Path) -> str:
    return (f"run `python -m rsir_qgis_plugin index repair {index_dir}` to rebuild it from its shards, "
            "or `index build --force` to start a new index in this folder")


def read_manifest(index_dir: Path) -> dict | None:
    """The live manifest, or None for a folder that holds no committed index.

    A folder with generation files but no readable manifest is refused, never taken for an empty
    index: a build there would commit an empty generation and delete every shard.
    """
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST
    if not path.exists() and not path.is_symlink():
        leftovers = committed_files(index_dir)
        if leftovers:
            raise IndexStoreError(f"{path}: missing, but the folder holds an index "
                                  f"({', '.join(p.name for p in leftovers[:3])}); {recovery_advice(index_dir)}")
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"{path}: unreadable index manifest ({exc}); {recovery_advice(index_dir)}") from exc
    validate(manifest, path)
    return manifest


def validate(manifest, path: Path) -> None:
    """Refuse a manifest of the wrong shape with one line, before any of its fields is used."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexStoreError(f"{path}: not an rsir index manifest; {recovery_advice(path.parent)}")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexStoreError(f"{path}: index format {version} is newer than this rsir reads "
                              f"({FORMAT_VERSION}); update rsir")
    problems = [f"'{key}' should be {kind.__name__}" for key, kind in _REQUIRED.items()
                if not _is(manifest.get(key), kind)]
    if not problems:
        problems = [f"'model.{key}' should be {kind.__name__}" for key, kind in _MODEL_REQUIRED.items()
                    if not _is(manifest["model"].get(key), kind)]
        problems += [f"'{key}' is '{manifest[key]}', not a {key} file name"
                     for key, pattern in _FILE_NAMES.items() if not pattern.fullmatch(manifest[key])]
        if manifest["index_kind"] not in INDEX_KINDS:
            problems.append(f"'index_kind' is '{manifest['index_kind']}'")
        if min(manifest["tile_count"], manifest["raster_count"], manifest["generation"]) < 0:
            problems.append("negative counts")
    if problems:
        raise IndexStoreError(f"{path}: damaged index manifest ({'; '.join(problems)}); "
                              f"{recovery_advice(path.parent)}")


def _is(value, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def require_manifest(index_dir: Path) -> dict:
    """The live manifest; an error a user can act on where there is no index."""
    index_dir = Path(index_dir)
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexStoreError(f"{index_dir}: not a folder; an index is a folder (give the folder of an index)")
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexStoreError(f"{index_dir}: no rsir index here (no {MANIFEST}); build one first")
    return manifest


def write_manifest(index_dir: Path, manifest: dict) -> None:
    validate(manifest, Path(index_dir) / MANIFEST)
    write_bytes_atomic(Path(index_dir) / MANIFEST, json.dumps(manifest, indent=2).encode())


def committed_files(index_dir: Path) -> list[Path]:
    """Catalog and vectors files of committed (or committing) generations in the folder."""
    if not Path(index_dir).is_dir():
        return []
    return sorted(p for p in Path(index_dir).iterdir()
                  if any(pattern.fullmatch(p.name) for pattern in _FILE_NAMES.values()))


def check_model(manifest: dict, model, index_dir: Path) -> None:
    """Refuse to mix embeddings of two models in one index (`model` is a core.model.ModelInfo)."""
    from ..errors import ModelMismatchError

    built_with = manifest["model"]
    if built_with["sha256"] != model.sha256:
        raise ModelMismatchError(
            f"{index_dir}: this index was built with model '{built_with['name']}' "
            f"({built_with.get('path', '?')}, sha256 {built_with['sha256'][:12]}); the model given is "
            f"'{model.contract.name}' ({model.path}, sha256 {model.sha256[:12]}). "
            "Use the same model, or another index directory.")
