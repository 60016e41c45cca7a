"""Writing files so that a crash leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp"
_UMASK_LOCK = threading.Lock()


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process umask: the permissions an ordinary open() would give a new file.

    mkstemp creates 0600 files whatever the umask, which would keep a shared index private.
    """
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mode & ~mask


def is_temporary(path: Path) -> bool:
    """A leftover of a writer killed between creating and renaming its temporary file."""
    return path.name.startswith(".") and TMP_MARK in path.name


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX; Windows has no directory handles to sync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final`; on success it is fsynced and renamed over `final`."""
    final = Path(final)
    # The temporary name keeps the extension: some writers (GDAL's GPKG driver) check it.
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=TMP_MARK + final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, umask_mode())
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, final)
        fsync_dir(final.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
