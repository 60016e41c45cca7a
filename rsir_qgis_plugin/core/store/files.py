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


READ_ONLY = "read-only file system: it is mounted read-only; choose an index folder on a writable disk"


def os_error_message(exc: OSError, where: Path, doing: str) -> IndexStoreError:
    """An IndexStoreError naming the file and saying what to do about the OS's refusal."""
    path = exc.filename or where
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "the disk is full (or the file is over a size limit); free space and build again"
    elif exc.errno == errno.EROFS:  # no permission would help here: say what is read-only
        advice = READ_ONLY
    elif exc.errno in (errno.EACCES, errno.EPERM):
        advice = "no permission to write here; choose a writable index folder"
    else:
        advice = exc.strerror or str(exc)
    return IndexStoreError(f"{path}: {doing} ({advice}); the previous index is unchanged")


def folder_error(exc: OSError, index_dir: Path, doing: str) -> IndexStoreError:
    """One line naming the index folder the user gave (not the subfolder or lock file that failed in it),
    what could not be done and the real reason: a read-only file system, or the folder (or file) that
    refuses this user."""
    if exc.errno == errno.EROFS:
        reason = READ_ONLY
    elif exc.errno in (errno.EACCES, errno.EPERM):
        refused = Path(exc.filename) if exc.filename else index_dir
        # mkdir of a folder that is not there is refused by the folder it would go in: name that one
        while not refused.exists() and refused != refused.parent:
            refused = refused.parent
        reason = f"no write permission on {refused}; choose a folder you may write in, or ask its owner"
    else:
        return os_error_message(exc, index_dir, doing)
    unchanged = "; the previous index is unchanged" if index_dir.is_dir() else ""
    return IndexStoreError(f"{index_dir}: {doing} ({reason}){unchanged}")


def make_index_folder(index_dir: Path) -> None:
    """Create the index folder and its shards/ (where absent), or say in one line why they cannot be."""
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexStoreError(f"{index_dir}: not a folder; give a folder for the index")
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise folder_error(exc, index_dir, "cannot create the index folder") from None
    try:
        (index_dir / "shards").mkdir(exist_ok=True)
    except OSError as exc:
        raise folder_error(exc, index_dir, "cannot write in the index folder") from None
