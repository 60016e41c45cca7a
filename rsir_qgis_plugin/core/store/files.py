"""Small helpers for the index's files: checksums, links refused, and OS errors turned into one line a user
can act on."""
from __future__ import annotations

import errno
import hashlib
import re
from pathlib import Path

from ..errors import IndexStoreError
from .manifest import MANIFEST, SEGMENT_DIR
from .shards import SHARD_DIR

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


READ_ONLY = "read-only file system: it is mounted read-only; choose an index folder on a writable disk"


def os_error_message(exc: OSError, where: Path, doing: str) -> IndexStoreError:
    """An IndexStoreError naming the file and saying what to do about the OS's refusal.

    `where` is the index folder, named for a full disk (the file that failed is often a temporary one).
    """
    path = exc.filename or where
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        unchanged = ("the previous index is unchanged" if (Path(where) / MANIFEST).exists()
                     else "nothing was committed")
        return IndexStoreError(f"disk full: {where} ({doing}: the disk is full or the file is over a size "
                               f"limit; free space and build again); {unchanged}")
    if exc.errno == errno.EROFS:  # no permission would help here: say what is read-only
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


# FAISS reports a failed write as RuntimeError("... write error in PATH: 65491 != 204800 (No space left
# on device)"): the C library's strerror closes the message.
_FAISS_WRITE = re.compile(r"write error in (\S+): .*\((.+)\)\s*$", re.S)
_STRERROR = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
             "File too large": errno.EFBIG, "Read-only file system": errno.EROFS,
             "Permission denied": errno.EACCES}


def faiss_write_error(exc: RuntimeError) -> OSError | None:
    """The OSError behind a FAISS write failure (a full disk...), or None for any other FAISS error."""
    found = _FAISS_WRITE.search(str(exc))
    if found is None:
        return None
    reason = found.group(2).strip()
    return OSError(_STRERROR.get(reason, errno.EIO), reason, found.group(1))


def refuse_links(index_dir: Path) -> None:
    """Refuse an index whose own subfolders (or lock) are symbolic links, with one line.

    rsir deletes the files and segments that a commit no longer uses: through a link it would
    delete (or truncate) a user's files outside the index folder.
    """
    segments = index_dir / SEGMENT_DIR
    named = [index_dir / ".lock", index_dir / SHARD_DIR, segments]
    if segments.is_dir() and not segments.is_symlink():
        named += [p for p in segments.iterdir() if re.fullmatch(r"\.?s\d+(\.tmp)?", p.name)]
    for path in named:
        if path.is_symlink():
            raise IndexStoreError(f"{path}: is a symbolic link; rsir writes and deletes only inside its "
                                  "index folder, so it refuses links there (replace the link with a real "
                                  "folder or remove it)")


def make_index_folder(index_dir: Path) -> None:
    """Create the index folder and its shards/ (where absent), or say in one line why they cannot be."""
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexStoreError(f"{index_dir}: not a folder; give a folder for the index")
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise folder_error(exc, index_dir, "cannot create the index folder") from None
    refuse_links(index_dir)
    try:
        (index_dir / "shards").mkdir(exist_ok=True)
    except OSError as exc:
        raise folder_error(exc, index_dir, "cannot write in the index folder") from None
