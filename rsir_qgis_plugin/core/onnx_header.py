"""The opset and IR version of an ONNX file, read from its protobuf header without the onnx package.

onnx is a training and export dependency, not one of the plugin's: `rsir doctor` and the Diagnostics
window still say which opset a model needs, so a user can tell whether this onnxruntime can run it.
"""
from __future__ import annotations

import os
from pathlib import Path

from .protobuf import LENGTH_DELIMITED, VARINT, Field, iter_fields, read_text


def describe_onnx_header(path: Path) -> str:
    """'opset 17, IR 8' read from the ModelProto's top-level fields, without the onnx package."""
    ir_version, opsets = read_onnx_header(path)
    default = opsets.get("", opsets.get("ai.onnx"))
    others = ", ".join(f"{domain} {version}" for domain, version in sorted(opsets.items())
                       if domain not in ("", "ai.onnx"))
    text = f"opset {default if default is not None else '?'}, IR {ir_version}"
    return f"{text} ({others})" if others else text


def read_onnx_header(path: Path) -> tuple[int, dict[str, int]]:
    """(ir_version, {domain: opset version}) of an ONNX file: fields 1 and 8 of onnx.ModelProto.

    Walks the protobuf's top level and seeks over the graph, so a large model costs a few reads.
    """
    ir_version, opsets = 0, {}
    with open(path, "rb") as f:
        for field in iter_fields(f, os.fstat(f.fileno()).st_size):
            if field.number == 1 and field.wire == VARINT:
                ir_version = field.value
            elif field.number == 8 and field.wire == LENGTH_DELIMITED:
                domain, version = _opset_entry(f, field)
                opsets[domain] = version
    if not ir_version:
        raise ValueError("no ir_version field")
    return ir_version, opsets


def _opset_entry(f, entry: Field) -> tuple[str, int]:
    """OperatorSetIdProto: domain (field 1, string), version (field 2, int64)."""
    domain, version = "", 0
    f.seek(entry.start)
    for field in iter_fields(f, entry.end):
        if field.number == 1 and field.wire == LENGTH_DELIMITED:
            domain = read_text(f, field)
        elif field.number == 2 and field.wire == VARINT:
            version = field.value
    return domain, version
