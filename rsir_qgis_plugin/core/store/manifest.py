"""The manifest: the commit point of an index. It lists the live segments and what each holds.

    INDEX_DIR/manifest.json   replaced atomically; a build is committed when it is written

An index is a list of immutable segments (catalog + vectors, see segments.py). A build adds a
segment for the rasters it embedded and tombstones the tiles of rasters it replaced or dropped;
`compact` merges every segment into one. Manifests of format 1 and 2 (one catalog and one
vectors file) are read as a single segment.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..atomic import write_bytes_atomic
from ..errors import IndexStoreError
from ..safe_json import is_int, list_of, loads

FORMAT = "rsir-index"
FORMAT_VERSION = 3  # 2: checksums and sizes; 3: segments with tombstones
MANIFEST = "manifest.json"
SEGMENT_DIR = "segments"
INDEX_KINDS = ("flat", "ivf", "ivfpq")
# A segment's files; an index upgraded from format 2 keeps its old files as its first segment.
_SEGMENT_FILE = re.compile(r"segments/s\d+/(catalog\.sqlite|vectors\.faiss|vectors\.f16|search\.faiss|search\.f16)"
                           r"|catalog-\d+\.sqlite|vectors-\d+\.faiss")
_LEGACY_FILES = {"catalog": re.compile(r"catalog-\d+\.sqlite"), "vectors": re.compile(r"vectors-\d+\.faiss")}
_REQUIRED = {"generation": int, "model": dict, "tile_count": int, "raster_count": int, "built_at": str}
_LEGACY_REQUIRED = {"catalog": str, "vectors": str, "index_kind": str}
_SEGMENT_REQUIRED = {"name": str, "catalog": str, "vectors": str, "kind": str, "base": int, "tiles": int,
                     "first_raster": int, "rasters": int, "dead_rasters": list, "dead_ranges": list,
                     "dead_tiles": int}
_MODEL_REQUIRED = {"name": str, "sha256": str, "embedding_dim": int}
# Optional in a segment (absent from those of earlier rsir): its identity stamp and file digests.
_SEGMENT_OPTIONAL = {"uid": str, "vectors_sample": str, "f16_sample": str, "f16_sha256": str,
                     "catalog_sha256": str, "vectors_sha256": str, "vectors_bytes": int,
                     # ivfpq: the sha256 of the index's shared codebook it was encoded with (store/codebook.py)
                     "codebook": str,
                     # database-side augmentation (store/dba.py): the search vectors' files and how they were made
                     "search": str, "search_bytes": int, "search_sha256": str, "search_sample": str,
                     "search_f16": str, "search_f16_sha256": str, "search_f16_sample": str, "dba": dict}
# The DBA setting (manifest["dba"] and each augmented segment's "dba"): neighbours and their weight's power.
_DBA_LIMITS = {"neighbours": (int, 1, 1000), "alpha": ((int, float), 0.0, 100.0)}
_dead_ranges = list_of(list_of(is_int, 2))


# Present from before a build's first commit (no manifest yet) until its manifest is written: segments
# found beside it were never committed, so the next build starts afresh instead of refusing the folder.
FIRST_COMMIT = ".first-commit"


def first_commit_pending(index_dir: Path) -> bool:
    marker = Path(index_dir) / FIRST_COMMIT
    return marker.is_file() and not marker.is_symlink()


def recovery_advice(index_dir: Path) -> str:
    return (f"run `rsir index repair {index_dir}` to rebuild it from its shards, "
            "or `index build --force` to start a new index in this folder")


def read_manifest(index_dir: Path) -> dict | None:
    """The live manifest (always in the segment form), or None for a folder with no committed index.

    A folder with committed files but no readable manifest is refused, never taken for an empty
    index: a build there would commit an empty index and delete every shard.
    """
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST
    if not path.exists() and not path.is_symlink():
        leftovers = committed_files(index_dir)
        if leftovers and not first_commit_pending(index_dir):
            raise IndexStoreError(f"{path}: missing, but the folder holds an index "
                                  f"({', '.join(p.name for p in leftovers[:3])}); {recovery_advice(index_dir)}")
        return None
    try:
        manifest = loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"{path}: unreadable index manifest ({exc}); {recovery_advice(index_dir)}") from exc
    validate(manifest, path)
    return as_segments(manifest)


def validate(manifest, path: Path) -> None:
    """Refuse a manifest of the wrong shape with one line, before any of its fields is used."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexStoreError(f"{path}: not an rsir index manifest; {recovery_advice(path.parent)}")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexStoreError(f"{path}: index format {version} is newer than this rsir reads "
                              f"({FORMAT_VERSION}); update rsir")
    problems = _type_problems(manifest, {**_REQUIRED, **(_LEGACY_REQUIRED if version < 3 else {"segments": list})})
    if not problems:
        problems = _type_problems(manifest["model"], _MODEL_REQUIRED, "model.")
    if not problems and version < 3:
        problems = [f"'{key}' is '{manifest[key]}', not a {key} file name"
                    for key, pattern in _LEGACY_FILES.items() if not pattern.fullmatch(manifest[key])]
        if manifest["index_kind"] not in INDEX_KINDS:
            problems.append(f"'index_kind' is '{manifest['index_kind']}'")
    if not problems and version >= 3:
        for number, segment in enumerate(manifest["segments"]):
            if not isinstance(segment, dict):
                problems.append(f"segment {number} is not an object")
                continue
            problems += _type_problems(segment, _SEGMENT_REQUIRED, f"segments[{number}].")
            present = {key: kind for key, kind in _SEGMENT_OPTIONAL.items() if segment.get(key) is not None}
            problems += _type_problems(segment, present, f"segments[{number}].")
            if not problems and not (list_of(is_int)(segment["dead_rasters"])
                                     and _dead_ranges(segment["dead_ranges"])):
                problems.append(f"segments[{number}] tombstones should be ids and [start, end] pairs")
            if problems:
                break
            problems += dba_problems(segment.get("dba"), f"segments[{number}].dba")
            problems += [f"segments[{number}].{key} is '{segment[key]}', not a segment file"
                         for key in ("catalog", "vectors", "f16", "search", "search_f16")
                         if segment.get(key) is not None and not _SEGMENT_FILE.fullmatch(str(segment[key]))]
            if segment["kind"] not in INDEX_KINDS:
                problems.append(f"segments[{number}].kind is '{segment['kind']}'")
            if segment["kind"] == "ivfpq" and segment.get("search") is not None and segment.get("search_f16") is None:
                problems.append(f"segments[{number}] has ivfpq search vectors without their float16 copy")
    if not problems and version >= 3:
        problems = _type_problems(manifest, {"next_tile": int, "next_raster": int})
        problems += dba_problems(manifest.get("dba"), "dba")
    if not problems and min(manifest["tile_count"], manifest["raster_count"], manifest["generation"]) < 0:
        problems.append("negative counts")
    if problems:
        raise IndexStoreError(f"{path}: damaged index manifest ({'; '.join(problems)}); "
                              f"{recovery_advice(path.parent)}")


def dba_problems(record, where: str) -> list[str]:
    """What is wrong with a DBA record ({"neighbours": n, "alpha": a, ...}); none for None (no DBA)."""
    if record is None:
        return []
    if not isinstance(record, dict):
        return [f"'{where}' should be an object"]
    problems = []
    for key, (kind, low, high) in _DBA_LIMITS.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or not low <= value <= high:
            problems.append(f"'{where}.{key}' should be a number from {low} to {high}")
    return problems


def _type_problems(record: dict, required: dict, prefix: str = "") -> list[str]:
    return [f"'{prefix}{key}' should be {kind.__name__}" for key, kind in required.items()
            if not (isinstance(record.get(key), kind) and not (kind is int and isinstance(record.get(key), bool)))]


def as_segments(manifest: dict) -> dict:
    """A manifest in the segment form; one of format 1 or 2 becomes a single segment."""
    if manifest.get("format_version", 0) >= 3:
        return manifest
    segment = {"name": "legacy", "catalog": manifest["catalog"], "vectors": manifest["vectors"], "f16": None,
               "kind": manifest["index_kind"], "base": 0, "tiles": manifest["tile_count"], "first_raster": 1,
               "rasters": manifest["raster_count"], "catalog_sha256": manifest.get("catalog_sha256"),
               "vectors_bytes": manifest.get("vectors_bytes"), "vectors_sha256": manifest.get("vectors_sha256"),
               "dead_rasters": [], "dead_ranges": [], "dead_tiles": 0}
    return {**{k: v for k, v in manifest.items() if k not in ("catalog", "vectors", "index_kind")},
            "segments": [segment], "next_tile": manifest["tile_count"],
            "next_raster": manifest["raster_count"] + 1}


def index_kind(manifest: dict) -> str:
    """The kind of search an index does, for people: its segments' kinds."""
    kinds = sorted({segment["kind"] for segment in manifest["segments"]}, key=INDEX_KINDS.index)
    return "+".join(kinds) if kinds else "flat"


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
    write_bytes_atomic(Path(index_dir) / MANIFEST, json.dumps(manifest, indent=1).encode())


def committed_files(index_dir: Path) -> list[Path]:
    """Catalog and vectors files of committed (or committing) index states in the folder."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return []
    legacy = [p for p in index_dir.iterdir() if any(r.fullmatch(p.name) for r in _LEGACY_FILES.values())]
    segments = index_dir / SEGMENT_DIR
    inside = sorted(segments.glob("s*/catalog.sqlite")) if segments.is_dir() else []
    return sorted(legacy) + inside


def model_not_found(index_dir: Path, manifest: dict) -> IndexStoreError:
    """No model was given and the index's own is neither at its recorded path nor among the bundled ones."""
    built_with = manifest["model"]
    return IndexStoreError(
        f"{index_dir}: the index's model '{built_with['name']}' was not found at "
        f"{built_with.get('path', '?')} (moved or deleted; sha256 {built_with['sha256'][:12]}); "
        "pass it with --model PATH")


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
