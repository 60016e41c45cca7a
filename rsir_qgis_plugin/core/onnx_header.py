"""The opset and IR version of an ONNX file, read from its protobuf header without the onnx package.

onnx is a training and export dependency, not one of the plugin's: `rsir doctor` and the Diagnostics
window still say which opset a model needs, so a user can tell whether this onnxruntime can run it.
"""
from __future__ import annotations

import io
import os
from pathlib import Path


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
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            key = read_varint(f)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value = read_varint(f)
                if number == 1:
                    ir_version = value
            elif wire == 2:
                length = read_varint(f)
                if number == 8:
                    domain, version = _opset_entry(f.read(length))
                    opsets[domain] = version
                else:
                    f.seek(length, os.SEEK_CUR)
            elif wire in (1, 5):
                f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            else:
                raise ValueError(f"unexpected protobuf wire type {wire}")
        if f.tell() > size:
            raise ValueError(f"truncated: {size} bytes, a field runs to byte {f.tell()}")
    if not ir_version:
        raise ValueError("no ir_version field")
    return ir_version, opsets


def _opset_entry(data: bytes) -> tuple[str, int]:
    """OperatorSetIdProto: domain (field 1, string), version (field 2, int64)."""
    stream, domain, version = io.BytesIO(data), "", 0
    while stream.tell() < len(data):
        key = read_varint(stream)
        if key & 7 == 0:
            value = read_varint(stream)
            version = value if key >> 3 == 2 else version
        elif key & 7 == 2:
            text = stream.read(read_varint(stream))
            domain = text.decode("utf-8", errors="replace") if key >> 3 == 1 else domain
        else:
            raise ValueError("unexpected field in an opset entry")
    return domain, version


def read_varint(stream) -> int:
    """One protobuf varint from a binary stream (the ONNX readers here walk the protobuf without onnx)."""
    value = shift = 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise ValueError("truncated file")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")
