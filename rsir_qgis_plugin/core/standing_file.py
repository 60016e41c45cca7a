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
KINDS = ("box", "image", "feedback")


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
                "generation": self.generation}

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


def read_saved(path: Path) -> SavedSearch:
    """The saved search in `path`, every field checked; RsirError with one line naming the file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        record = loads(data, max_bytes=MAX_FILE_BYTES)
    except (OSError, JsonLimitError) as exc:
        raise RsirError(f"{path}: damaged saved search ({getattr(exc, 'strerror', None) or exc})") from None
    problems = check_record(record, SCHEMA)
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
        generation=record["generation"])


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
    return problems
