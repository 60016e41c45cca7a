"""Parsing JSON that comes from files (manifests, catalog columns, shard records, model metadata) with limits.

json.loads recurses once per nesting level, so a damaged or hostile file of 100,000 nested brackets
raises RecursionError (or exhausts the stack) inside the parser. The depth is therefore measured
first, by counting brackets outside strings, and the text is refused before json.loads sees it.
Each record type then has a small schema (`check_record`) so that a missing key or a wrong type is
one line naming the file, not a KeyError or TypeError far away.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

MAX_DEPTH = 64  # no rsir record nests deeper than 5 levels; model cards a few more
MAX_BYTES = 64 << 20  # a manifest of 10^5 segments is ~50 MB; shard records and columns are tiny
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


class JsonLimitError(ValueError):
    """JSON text that is too large, too deep, malformed or of the wrong shape; the message says which."""


def nesting_depth(text: str | bytes) -> int:
    """The deepest bracket nesting of a JSON text, strings left out (linear, no recursion)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    codes = np.frombuffer(_STRING.sub(b"", data), np.uint8)
    if not len(codes):
        return 0
    steps = np.isin(codes, _OPEN).astype(np.int64) - np.isin(codes, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def loads(text: str | bytes, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """json.loads with a size and a depth limit; JsonLimitError (a ValueError) says what is wrong."""
    size = len(text)
    if size > max_bytes:
        raise JsonLimitError(f"JSON of {size:,} bytes, over the limit of {max_bytes:,}")
    # The brackets' count bounds the depth: most texts (a catalog row's few fields) need no scan.
    brackets = sum(text.count(c) for c in (("[", "{") if isinstance(text, str) else (b"[", b"{")))
    depth = nesting_depth(text) if brackets > max_depth else 0
    if depth > max_depth:
        raise JsonLimitError(f"JSON nested {depth:,} levels deep, over the limit of {max_depth}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: only if the limit is set above the stack
        raise JsonLimitError(f"malformed JSON ({str(exc)[:120]})") from None


# Schema: key -> accepted types (a tuple), or a callable that says whether a value is acceptable.
Number = (int, float)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def list_of(check, length: int | None = None):
    def accepts(value: Any) -> bool:
        return (isinstance(value, list) and (length is None or len(value) == length)
                and all(check(item) for item in value))
    accepts.__name__ = f"list of {getattr(check, '__name__', 'values')}" + (f" ({length})" if length else "")
    return accepts


def optional(check):
    def accepts(value: Any) -> bool:
        return value is None or check(value)
    accepts.__name__ = f"{getattr(check, '__name__', 'value')} or null"
    return accepts


def check_record(record: Any, schema: dict, optional_keys: dict | None = None) -> list[str]:
    """What is wrong with a record against its schema (required keys, then optional ones), [] if nothing."""
    if not isinstance(record, dict):
        return [f"not an object but {type(record).__name__}"]
    problems = []
    for keys, required in ((schema, True), (optional_keys or {}, False)):
        for key, check in keys.items():
            if key not in record:
                if required:
                    problems.append(f"'{key}' is missing")
                continue
            if not check(record[key]):
                problems.append(f"'{key}' should be {getattr(check, '__name__', 'something else')}")
    return problems
