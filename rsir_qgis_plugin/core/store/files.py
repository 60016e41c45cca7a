"""Small helpers for the index's files: checksums, and OS errors turned into one line a user can act on."""
from __future__ import annotations

import errno
import hashlib
from pathlib import Path

from ..errors import IndexStoreError

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def os_error_message(exc: OSError, where: Path, doing: str) -> IndexStoreError:
    """An IndexStoreError naming the file and saying what to do about the OS's refusal."""
    path = exc.filename or where
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "the disk is full (or the file is over a size limit); free space and build again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "no permission to write here; choose a writable index folder"
    else:
        advice = exc.strerror or str(exc)
    return IndexStoreError(f"{path}: {doing} ({advice}); the previous index is unchanged")
