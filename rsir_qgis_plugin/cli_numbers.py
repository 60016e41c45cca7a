"""Numbers on the command line, checked where argparse reads them: finite, in a sensible range, and
quoted back short, so `--tile-metres inf`, `--bbox 1e308 ...` or a box of 1e300 degrees is one line
("must be ... got 1e+300"), never a traceback or a 300-digit number deep inside the engine.
"""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable

MAX_COORDINATE = 1e10  # no CRS has coordinates this large (metres: 250 times the Earth's circumference)
MAX_GROUND_M = 1e7  # a tile or stride on the ground: a quarter of the Earth's circumference
MAX_PX = 1_000_000  # a tile or stride in pixels
MAX_GSD_M = 1e6  # metres a pixel of a query image
MAX_K = 100_000  # hits a search returns
MAX_BATCH = 65_536  # tiles an inference call takes (memory bounds it further: core/embedder.py)

# argparse reads an argument that starts with '-' as an option unless it matches its negative-number
# pattern, '^-\d+$|^-\d*\.\d+$', which has no exponent: `--bbox -1.5e1 ...` failed with "expected 4
# arguments". This pattern also knows exponents, and -inf/-nan (which the types then refuse by name).
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser (and, through add_subparsers, its subcommands') that takes negative numbers in
    any float notation as values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER  # argparse's own attribute (Python 3.8-3.13)


def short(value: float) -> str:
    """A number as a message quotes it: 6 significant digits (1e+300, not 301 digits)."""
    try:
        return f"{float(value):.6g}"
    except OverflowError:  # a whole number of more than 308 digits
        return "a number over 1e+308"


def _parsed(text: str, what: str, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise argparse.ArgumentTypeError(f"{what} must be {kind}, got '{text[:40]}'") from None
    if not integer and not math.isfinite(value):  # whole numbers are finite (and may exceed a float)
        raise argparse.ArgumentTypeError(f"{what} must be a finite number, got '{text[:40]}'")
    return value


def bounded(what: str, low: float, high: float, integer: bool = False,
            low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] ((low, high] when low_open), else one line."""
    def parse(text: str) -> float:
        value = _parsed(text, what, integer)
        if value > high or value < low or (low_open and value == low):
            lower = f"above {short(low)}" if low_open else f"at least {short(low)}"
            raise argparse.ArgumentTypeError(f"{what} must be {lower} and at most {short(high)}, "
                                             f"got {short(value)}")
        return value

    parse.__name__ = what  # argparse names the type in some of its own messages
    return parse


def coordinate_problem(value: float) -> str | None:
    """Why a box coordinate is unusable (not finite, beyond ±MAX_COORDINATE), or None."""
    if not math.isfinite(value):
        return f"{short(value)} is not a finite number"
    if abs(value) > MAX_COORDINATE:
        return f"{short(value)} is beyond ±{short(MAX_COORDINATE)}, which no coordinate system reaches"
    return None


def coordinate(text: str) -> float:
    """An argparse type for one coordinate of --bbox."""
    value = _parsed(text, "a coordinate", integer=False)
    if coordinate_problem(value):
        raise argparse.ArgumentTypeError(f"a coordinate must be finite and within ±{short(MAX_COORDINATE)}, "
                                         f"got {short(value)}")
    return value


ground_metres = bounded("a size on the ground in metres", 0.0, MAX_GROUND_M, low_open=True)
stride_px = bounded("a stride in pixels", 1, MAX_PX, integer=True)
batch_size = bounded("a batch size", 1, MAX_BATCH, integer=True)
hits = bounded("k (the number of hits)", 1, MAX_K, integer=True)
score = bounded("a minimum score", -1.0, 1.0)
image_gsd = bounded("metres a pixel", 0.0, MAX_GSD_M, low_open=True)
