"""A standing search's file, INDEX/searches/<name>.json: the name rules, the record, and reading it back.

The file is untrusted input (it sits in a folder anyone may copy or edit): it is read with safe_json's
size and depth limits, every field is checked against a schema and for sense (a unit query vector of the
index's dimension, finite numbers, windows of four integers), and any problem is one line naming the file.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import RsirError
from .query_step import QueryArea
from .safe_json import (
    JsonLimitError,
    check_record,
    is_int,
    is_number,
    list_of,
    loads,
    optional,
)

FORMAT = 1
SEARCHES = "searches"  # the folder inside the index directory
NAME_MAX = 64
MAX_FILE_BYTES = 16 << 20  # a query of 2048 floats is ~40 kB; the seen keys of 10^5 rasters ~5 MB
MAX_AREAS = 1000  # labelled boxes a feedback search may leave out
MAX_DIM = 16384
# Letters, digits, space, '_', '-', '.', not first a dot or space: a file name on every system, no separators.
_NAME = re.compile(r"^[^\W_][\w .-]*$")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
KINDS = ("box", "image", "feedback", "change")
MAX_PAIRS = 100_000  # pair keys a search by change may have seen


def check_name(name: str) -> str:
    """The name as given when it makes a safe file name, else one line saying why (RsirError)."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "is empty"
    elif len(name) > NAME_MAX:
        problem = f"is longer than {NAME_MAX} characters"
    elif "/" in name or "\\" in name or ".." in name:
        problem = "may not hold '/', '\\' or '..'"
    elif not _NAME.match(name) or name.endswith((".", " ")):
        problem = "may hold only letters, digits, spaces, '_', '-' and '.', starting with a letter or digit"
    elif name.split(".")[0].strip().lower() in _RESERVED:
        problem = "is a name Windows reserves for a device"
    if problem:
        raise RsirError(f"search name '{str(name)[:80]}' {problem}")
    return name


def search_path(index_dir: str | Path, name: str) -> Path:
    return Path(index_dir) / SEARCHES / f"{check_name(name)}.json"


def new_hits_path(index_dir: str | Path, name: str) -> Path:
    return Path(index_dir) / SEARCHES / f"{check_name(name)}.new.gpkg"


def refuse_taken(index_dir: str | Path, name: str) -> Path:
    """The file a new search of this name would be; RsirError when a saved search has the name already."""
    path = search_path(index_dir, name)
    if path.exists():
        raise RsirError(f"{path}: a saved search of that name exists; remove it first (`rsir searches remove`) "
                        "or choose another name")
    return path


def searches_folder(index_dir: str | Path, create: bool) -> Path:
    """INDEX/searches, never through a symbolic link (a link could send writes anywhere)."""
    folder = Path(index_dir) / SEARCHES
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise RsirError(f"{folder}: is not a plain folder; rsir keeps saved searches only in a real folder")
    if create:
        folder.mkdir(exist_ok=True)
    return folder


def model_identity(manifest: dict) -> dict:
    """The index's model as a saved search records it (name, sha256, embedding_dim)."""
    built_with = manifest["model"]
    return {"name": built_with["name"], "sha256": built_with["sha256"],
            "embedding_dim": int(built_with["embedding_dim"])}


def live_keys(reader) -> tuple[str, ...]:
    """The shard keys of the index's live rasters (an IndexReader's): what a saved search has seen."""
    return tuple(sorted({entry.shard for entry in reader.rasters.values()}))


def example_record(box) -> dict:
    """A LabelledBox as a saved search keeps it: {raster, bbox, crs, positive}."""
    return {"raster": box.raster, "bbox": [float(v) for v in box.bbox], "crs": box.crs, "positive": box.positive}


def write_new_saved(index_dir: str | Path, saved: SavedSearch, overwrite: bool = False) -> Path:
    """Write a newly saved search (atomically); an existing one of its name is refused unless `overwrite`."""
    from .atomic import write_bytes_atomic

    path = search_path(index_dir, saved.name) if overwrite else refuse_taken(index_dir, saved.name)
    folder = searches_folder(index_dir, create=True)
    write_bytes_atomic(folder / path.name, saved.to_bytes())
    return path


@dataclass(frozen=True, eq=False)
class SavedSearch:
    """A search kept by name: what scores tiles, how hits are ranked, and which rasters it has seen."""

    name: str
    kind: str  # "box", "image" or "feedback"
    model: dict  # the index's model identity when saved: name, sha256, embedding_dim
    query: np.ndarray  # (D,) unit vector
    k: int
    nms_iou: float
    min_score: float | None
    scoring: str = "cosine"  # or "probability" (a feedback classifier)
    weights: np.ndarray | None = None
    bias: float = 0.0
    augmented: bool = False
    areas: tuple[QueryArea, ...] = ()
    examples: list = field(default_factory=list)  # [{raster, bbox, crs, positive}] as the analyst gave them
    query_polygon: list | None = None  # a box query's ring, in query_crs_wkt (written beside new hits)
    query_crs_wkt: str = ""
    seen: tuple[str, ...] = ()  # shard keys of the rasters already searched (core/build_plan.shard_key_of)
    saved_at: str = ""
    generation: int = 0  # the index generation last searched
    # A search by change (kind "change"): {"size": the examples' mean |after - before| (places that changed
    # less are damped), "pairs": the keys of the pairs already ranked (core/pair_store.pair_key),
    # "other_pairs": whether stored pairs made since are ranked too, "min_coverage"}; None otherwise.
    change: dict | None = None

    def to_record(self) -> dict:
        return {"format": FORMAT, "name": self.name, "kind": self.kind, "model": self.model,
                "query": [float(x) for x in self.query], "k": self.k, "nms_iou": self.nms_iou,
                "min_score": self.min_score, "scoring": self.scoring,
                "classifier": None if self.weights is None else {"weights": [float(x) for x in self.weights],
                                                                 "bias": float(self.bias)},
                "augmented": self.augmented,
                "areas": [{"raster": a.raster, "window": [int(v) for v in a.window],
                           "ground": None if a.ground is None else np.asarray(a.ground, float).tolist()}
                          for a in self.areas],
                "examples": self.examples, "query_polygon": self.query_polygon,
                "query_crs_wkt": self.query_crs_wkt, "seen": sorted(self.seen), "saved_at": self.saved_at,
                "generation": self.generation, "change": self.change}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_record(), indent=1).encode("utf-8")


def _finite_number(value) -> bool:
    return is_number(value) and math.isfinite(value)


def _text(value) -> bool:
    return isinstance(value, str)


def _flag(value) -> bool:
    return isinstance(value, bool)


def _object(schema: dict):
    def accepts(value) -> bool:
        return not check_record(value, schema)
    accepts.__name__ = "an object with " + ", ".join(schema)
    return accepts


def _one_of(*values):
    def accepts(value) -> bool:
        return isinstance(value, str) and value in values
    accepts.__name__ = " or ".join(f"'{v}'" for v in values)
    return accepts


def _key(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 256


SCHEMA = {
    "format": is_int, "name": _text, "kind": _one_of(*KINDS),
    "model": _object({"name": _text, "sha256": _text, "embedding_dim": is_int}),
    "query": list_of(_finite_number), "k": lambda v: is_int(v) and 1 <= v <= 100_000,
    "nms_iou": lambda v: _finite_number(v) and 0 < v <= 1, "min_score": optional(_finite_number),
    "scoring": _one_of("cosine", "probability"),
    "classifier": optional(_object({"weights": list_of(_finite_number), "bias": _finite_number})),
    "augmented": _flag,
    "areas": list_of(_object({"raster": _text, "window": list_of(is_int, 4),
                              "ground": optional(list_of(list_of(_finite_number, 2), 4))})),
    "examples": list_of(_object({"raster": _text, "bbox": list_of(_finite_number, 4), "crs": optional(_text),
                                 "positive": _flag})),
    "query_polygon": optional(list_of(list_of(_finite_number, 2))), "query_crs_wkt": _text,
    "seen": list_of(_key), "saved_at": _text, "generation": is_int,
}
# Keys a file may lack (one saved before they existed).
OPTIONAL = {
    "change": optional(_object({"size": lambda v: _finite_number(v) and v > 0, "pairs": list_of(_key),
                                "other_pairs": _flag, "min_coverage": lambda v: _finite_number(v) and 0 < v <= 1})),
}


def read_saved(path: Path) -> SavedSearch:
    """The saved search in `path`, every field checked; RsirError with one line naming the file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        record = loads(data, max_bytes=MAX_FILE_BYTES)
    except (OSError, JsonLimitError) as exc:
        raise RsirError(f"{path}: damaged saved search ({getattr(exc, 'strerror', None) or exc})") from None
    problems = check_record(record, SCHEMA, OPTIONAL)
    if not problems:
        problems = _sense(record, path)
    if problems:
        raise RsirError(f"{path}: damaged saved search ({'; '.join(problems[:3])})")
    query = np.asarray(record["query"], np.float32)
    classifier = record["classifier"]
    return SavedSearch(
        name=record["name"], kind=record["kind"], model=record["model"], query=query, k=record["k"],
        nms_iou=float(record["nms_iou"]), min_score=record["min_score"], scoring=record["scoring"],
        weights=None if classifier is None else np.asarray(classifier["weights"], np.float32),
        bias=0.0 if classifier is None else float(classifier["bias"]), augmented=record["augmented"],
        areas=tuple(QueryArea(raster=a["raster"], window=tuple(a["window"]),
                              ground=None if a["ground"] is None else np.asarray(a["ground"], float))
                    for a in record["areas"]),
        examples=record["examples"], query_polygon=record["query_polygon"],
        query_crs_wkt=record["query_crs_wkt"], seen=tuple(record["seen"]), saved_at=record["saved_at"],
        generation=record["generation"], change=record.get("change"))


def _sense(record: dict, path: Path) -> list[str]:
    """What the schema cannot say: the version, the name matching the file, the vectors' shapes."""
    problems = []
    if record["format"] != FORMAT:
        problems.append(f"format {record['format']}, this rsir reads format {FORMAT}")
    if record["name"] + ".json" != path.name:
        problems.append(f"it names itself '{record['name'][:80]}'")
    dim = len(record["query"])
    if not 0 < dim <= MAX_DIM or dim != record["model"]["embedding_dim"]:
        problems.append(f"a query of {dim} numbers for a {record['model']['embedding_dim']}-d model")
    elif abs(float(np.linalg.norm(record["query"])) - 1.0) > 1e-3:
        problems.append("its query is not a unit vector")
    classifier = record["classifier"]
    if classifier is not None and len(classifier["weights"]) != dim:
        problems.append(f"classifier weights of {len(classifier['weights'])} numbers for a {dim}-d query")
    if (classifier is None) != (record["scoring"] == "cosine"):
        problems.append(f"scoring '{record['scoring']}' with{'out' if classifier is None else ''} a classifier")
    if len(record["areas"]) > MAX_AREAS:
        problems.append(f"{len(record['areas'])} areas, over {MAX_AREAS}")
    if any(w[2] <= 0 or w[3] <= 0 for w in (a["window"] for a in record["areas"])):
        problems.append("an area with an empty window")
    if (record["kind"] == "change") != (record.get("change") is not None):
        problems.append(f"kind '{record['kind']}' with{'out' if record.get('change') is None else ''} a change record")
    elif record.get("change") is not None and len(record["change"]["pairs"]) > MAX_PAIRS:
        problems.append(f"{len(record['change']['pairs'])} pairs seen, over {MAX_PAIRS}")
    return problems
