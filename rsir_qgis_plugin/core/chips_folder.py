"""A chips folder on disk: its layout, the checks on --out, and its atomic replacement.

    DIR/positive/00001.tif ...   one GeoTIFF per labelled box marked positive
    DIR/negative/00003.tif ...   one per box marked negative: the class "not the target"
    DIR/chips.csv                file, label, raster, xmin, ymin, xmax, ymax, crs, col, row, width, height
    DIR/chips.json               what made the chips: the labels file (name, sha256), the index, its model,
                                 the chip size, the counts, --per-class and its seed

One folder per class is what `python -m training.fit --data DIR` reads (training/data/folder.py lists the
sub-folders as classes and ignores the files beside them). The folder is written whole under a temporary
name beside DIR (`.DIR.<random>.tmp`), then renamed to DIR: a reader never sees half a folder, and a
failed or cancelled export leaves DIR as it was. DIR may be new, an empty folder, or a chips folder this
module wrote before (replaced); anything else is refused in one line, so an export never deletes a
user's files.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from .atomic import TMP_MARK, fsync_dir, output_error, umask_mode
from .errors import RsirError

CSV_NAME = "chips.csv"
MANIFEST_NAME = "chips.json"
CHIPS_FORMAT = "rsir-chips"
CHIPS_VERSION = 1
CLASS_FOLDERS = ("positive", "negative")
CHIP_SUFFIX = ".tif"
MAX_MANIFEST_BYTES = 1 << 20  # a chips.json is a few kB; a bigger file is not ours


@dataclass(frozen=True)
class ChipRow:
    """One line of chips.csv: a chip file (relative to the folder) and the box it shows."""

    file: str
    label: str
    raster: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    crs: str  # EPSG:n where the CRS has a code, else its WKT; '' for a raster without one
    col: int
    row: int
    width: int
    height: int


CSV_COLUMNS = tuple(f.name for f in fields(ChipRow))


def checked_out_dir(out_dir: str | Path, index_dir: str | Path) -> Path:
    """The folder to export into, or one line saying why not: a new path, an empty folder or an earlier
    chips folder, not a link, not inside the index."""
    out = Path(out_dir).expanduser()
    if out.is_symlink():
        raise RsirError(f"{out_dir}: is a symbolic link; give a folder path for the chips")
    index = Path(os.path.realpath(index_dir))
    real = Path(os.path.realpath(out))
    if real == index or index in real.parents or real in index.parents:
        raise RsirError(f"{out_dir}: is inside the index folder {index_dir} or holds it; choose a folder "
                        "outside the index for the chips")
    if not out.exists():
        return out
    if not out.is_dir():
        raise RsirError(f"{out_dir}: exists and is not a folder; give a new or empty folder for the chips")
    if any(out.iterdir()) and not is_chips_folder(out):
        raise RsirError(f"{out_dir}: exists and is neither empty nor a chips folder rsir wrote; give a new or "
                        "empty folder for the chips")
    return out


def is_chips_folder(folder: Path) -> bool:
    """Whether `folder` holds only what an export writes (its manifest, CSV and class folders of chips)."""
    try:
        entries = {entry.name: entry for entry in os.scandir(folder)}
        if MANIFEST_NAME not in entries or not entries[MANIFEST_NAME].is_file(follow_symlinks=False):
            return False
        if set(entries) - {MANIFEST_NAME, CSV_NAME, *CLASS_FOLDERS}:
            return False
        for name in CLASS_FOLDERS:
            if name in entries:
                if not entries[name].is_dir(follow_symlinks=False):
                    return False
                if any(not (chip.name.endswith(CHIP_SUFFIX) and chip.is_file(follow_symlinks=False))
                       for chip in os.scandir(entries[name].path)):
                    return False
        return read_manifest(folder / MANIFEST_NAME).get("format") == CHIPS_FORMAT
    except (OSError, RsirError):
        return False


def read_manifest(path: Path) -> dict:
    """A chips.json as a dict; an error for a file too big or not a JSON object (untrusted input)."""
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise RsirError(f"{path}: larger than a chips manifest can be")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RsirError(f"{path}: not a chips manifest ({exc})") from None
    if not isinstance(data, dict):
        raise RsirError(f"{path}: not a chips manifest (not a JSON object)")
    return data


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A new empty folder beside `out` to fill; on success it replaces `out` (new, empty, or an earlier
    chips folder), on any error or cancellation it is removed and `out` is left as it was."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=TMP_MARK, dir=parent))
        os.chmod(stage, umask_mode(0o777))
    except OSError as exc:
        raise output_error(exc, out) from None
    try:
        yield stage
        _replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _replace(stage: Path, out: Path) -> None:
    """Rename the filled stage to `out`. An empty folder is replaced by the rename itself; an earlier chips
    folder is first moved aside (a crash between the two renames leaves it as `.out.<random>.old.tmp`)."""
    old = None
    try:
        if out.exists() and any(out.iterdir()):
            if not is_chips_folder(out):  # filled by someone else since the check: never delete it
                raise RsirError(f"{out}: was filled while the chips were written; nothing was replaced")
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old" + TMP_MARK, dir=out.parent))
            os.replace(out, old)
        os.replace(stage, out)
        fsync_dir(out.parent)
    except OSError as exc:
        if old is not None and not out.exists():
            os.replace(old, out)  # put the earlier folder back
            old = None
        raise output_error(exc, out) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_csv(rows: Sequence[ChipRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(astuple(row) for row in rows)


def read_csv(path: str | Path) -> list[ChipRow]:
    """The rows of a chips.csv (for tests and scripts that pair chips with their boxes)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise RsirError(f"{path}: not a chips.csv (columns {reader.fieldnames})")
        return [ChipRow(file=r["file"], label=r["label"], raster=r["raster"], xmin=float(r["xmin"]),
                        ymin=float(r["ymin"]), xmax=float(r["xmax"]), ymax=float(r["ymax"]), crs=r["crs"],
                        col=int(r["col"]), row=int(r["row"]), width=int(r["width"]), height=int(r["height"]))
                for r in reader]


def write_manifest(manifest: dict, path: Path) -> None:
    path.write_text(json.dumps({"format": CHIPS_FORMAT, "version": CHIPS_VERSION, **manifest}, indent=1),
                    encoding="utf-8")
