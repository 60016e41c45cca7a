"""The external-data files an ONNX model names, found by walking its protobuf without the onnx package.

A model saved with external data keeps its weights in files beside the .onnx (TensorProto.external_data,
key "location"). Those bytes are part of the model: the model's identity (core/model.py) hashes them
too, or a changed weights file would pass as the same model and mix two models' embeddings in one index.
onnxruntime does not list these files, and onnx is not a plugin dependency, so the walk is done here,
following only the messages that can hold a tensor and seeking over everything else (raw weights
included): a large model costs a few thousand small reads.
"""
from __future__ import annotations

import os
from pathlib import Path

from .protobuf import LENGTH_DELIMITED, VARINT, iter_fields, read_text

EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
MAX_DEPTH = 32  # graphs nest in node attributes (If, Loop, Scan); a deeper file is hostile, not a model

# Per message kind, the fields (number -> kind) that lead to tensors (onnx/onnx.proto3).
_MODEL, _GRAPH, _NODE, _FUNCTION, _ATTRIBUTE, _SPARSE, _TENSOR, _ENTRY = range(8)
_CHILDREN = {
    _MODEL: {7: _GRAPH, 25: _FUNCTION},                       # graph, functions
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},              # node, initializer, sparse_initializer
    _NODE: {5: _ATTRIBUTE},                                   # attribute
    _FUNCTION: {7: _NODE},                                    # node
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},                        # values, indices
    _TENSOR: {13: _ENTRY},                                    # external_data
}


def external_data_locations(path: Path) -> tuple[str, ...]:
    """The 'location' of every tensor stored outside `path` (data_location EXTERNAL), sorted, once each.

    Raises ValueError for a file that is not a well-formed protobuf or nests too deep.
    """
    found: set[str] = set()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        _walk(f, size, _MODEL, found, 0)
    return tuple(sorted(found))


def _walk(f, end: int, kind: int, found: set[str], depth: int) -> dict:
    """Read one message up to byte `end`; collect tensors' external locations into `found`.

    Returns what a tensor or an external_data entry holds (their own small fields), else {}.
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"messages nested more than {MAX_DEPTH} deep")
    children = _CHILDREN.get(kind, {})
    own: dict = {"entries": []}
    for field in iter_fields(f, end):
        if field.wire == VARINT and kind == _TENSOR and field.number == 14:
            own["data_location"] = field.value
        elif field.wire == LENGTH_DELIMITED:
            if kind == _ENTRY and field.number in (1, 2):
                own["key" if field.number == 1 else "value"] = read_text(f, field)
            elif field.number in children:
                child = _walk(f, field.end, children[field.number], found, depth + 1)
                if kind == _TENSOR:
                    own["entries"].append(child)
    if kind == _TENSOR and own.get("data_location") == EXTERNAL:
        found.update(entry["value"] for entry in own["entries"]
                     if entry.get("key") == "location" and entry.get("value"))
    return own
