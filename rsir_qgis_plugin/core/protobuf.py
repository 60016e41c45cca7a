"""The protobuf wire format, read field by field: the ONNX readers walk model files without the onnx package.

onnx is a training and export dependency, not one of the plugin's, and a model file is untrusted input:
every length is checked against the message that holds it, and anything malformed is a ValueError.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Field:
    """One field of a message: a varint's value, or where a length-delimited payload lies in the stream."""
    number: int
    wire: int
    value: int = 0   # the varint (VARINT)
    start: int = 0   # first payload byte (LENGTH_DELIMITED)
    length: int = 0  # payload bytes (LENGTH_DELIMITED)

    @property
    def end(self) -> int:
        return self.start + self.length


def iter_fields(stream: BinaryIO, end: int) -> Iterator[Field]:
    """The fields of the message from the stream's position up to byte `end`.

    After each length-delimited field the stream is put after its payload, whatever the caller read
    meanwhile, so a caller reads only the payloads it wants and the rest costs a seek.
    """
    while stream.tell() < end:
        key = read_varint(stream)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            yield Field(number, wire, value=read_varint(stream))
        elif wire == LENGTH_DELIMITED:
            length = read_varint(stream)
            start = stream.tell()
            if start + length > end:
                raise ValueError(f"a field runs past its message (byte {start + length} of {end})")
            yield Field(number, wire, start=start, length=length)
            stream.seek(start + length)
        elif wire in (FIXED64, FIXED32):
            stream.seek(8 if wire == FIXED64 else 4, os.SEEK_CUR)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    if stream.tell() > end:
        raise ValueError(f"truncated: a field runs to byte {stream.tell()} of {end}")


def read_text(stream: BinaryIO, field: Field) -> str:
    """A length-delimited field's payload as text (bad UTF-8 becomes U+FFFD, not an error)."""
    stream.seek(field.start)
    return stream.read(field.length).decode("utf-8", errors="replace")


def read_varint(stream: BinaryIO) -> int:
    """One protobuf varint."""
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
