"""Writing files so that a crash leaves either the old file or the new one, never half of one; and where a
user's output file (hits, labels, an export) may go at all."""
from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RsirError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

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


# What an existing non-regular path is, for the line that refuses to write over it.
_KINDS = ((stat.S_ISDIR, "is a folder"), (stat.S_ISCHR, "is a device"), (stat.S_ISBLK, "is a device"),
          (stat.S_ISFIFO, "is a named pipe (FIFO)"), (stat.S_ISSOCK, "is a socket"))


def output_target(path: str | Path, index_dir: str | Path | None = None, what: str = "file") -> Path:
    """The file a user's output (hits, labels, an export) is written to, or one line saying why not.

    The atomic rename replaces whatever is at the path: a device node (/dev/null, as root), a FIFO or a
    symbolic link would become a regular file. So an existing path must be a regular file; a symbolic
    link is followed when it ends at a regular file (that file is replaced, the link is kept) and refused
    otherwise (a dangling link could create a file anywhere). A path inside `index_dir` (its manifest,
    a segment's catalog) is refused: overwriting it would destroy the index. `what` names the file
    wanted in the advice ("the .parquet file").
    """
    path = Path(path)
    target = path
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        try:
            mode = os.stat(target).st_mode
        except OSError as exc:  # dangling, a loop, or a folder on the way refuses us
            raise RsirError(f"{path}: is a symbolic link to {target}, which cannot be written "
                            f"({exc.strerror}); give the path of the {what} to write") from None
        if not stat.S_ISREG(mode):
            raise RsirError(f"{path}: is a symbolic link to {target}, which {_kind(mode)}; give the path "
                            f"of the {what} to write")
    else:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise output_error(exc, path) from None
        if mode is not None and not stat.S_ISREG(mode):
            raise RsirError(f"{path}: {_kind(mode)}; give the path of the {what} to write")
    if index_dir is not None:
        index = Path(os.path.realpath(index_dir))
        real = Path(os.path.realpath(target))
        if real == index or index in real.parents:
            raise RsirError(f"{path}: is inside the index folder {index_dir}; writing there would damage "
                            "the index, choose a path outside it")
    return target


def _kind(mode: int) -> str:
    return next((text for test, text in _KINDS if test(mode)), "is not a regular file")


def output_error(exc: OSError, path: str | Path) -> RsirError:
    """An OS refusal to write an output file as one line naming the file the user gave."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return RsirError(f"disk full: {path} (free some space or choose another disk; a file already there "
                         "is unchanged)")
    if exc.errno == errno.EROFS:
        return RsirError(f"{path}: read-only file system; choose a folder on a writable disk")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return RsirError(f"{path}: no permission to write here; choose a folder you may write in")
    return RsirError(f"{path}: cannot write ({exc.strerror or exc})")


@contextmanager
def atomic_output(final: Path, shown: str | Path | None = None) -> Iterator[Path]:
    """atomic_path for a user's output file (checked by output_target first): its parent folder is made,
    and OS errors (a full disk above all) become one line naming `shown` (default: `final`)."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(final)
        with atomic_path(final) as tmp, _writer_lock(tmp):
            yield tmp
    except OSError as exc:
        raise output_error(exc, shown or final) from None


@contextmanager
def _writer_lock(tmp: Path) -> Iterator[None]:
    """Hold a lock on the temporary file while it is written, so that another writer of the same output
    can tell a live writer's file from one a killed writer left (the lock goes with the process)."""
    if fcntl is None:  # Windows: a file being written cannot be deleted there anyway
        yield
        return
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_stale_temporaries(final: Path) -> None:
    """Delete the temporary files that writers of `final` killed before their rename left beside it.

    Only names atomic_path makes for this very output, only regular files, and only those no live
    writer holds locked: a user's own files are never touched.
    """
    if fcntl is None:
        return
    pattern = re.compile(rf"\.{re.escape(final.name)}\.[a-z0-9_]{{8}}{re.escape(TMP_MARK + final.suffix)}")
    try:
        entries = [e for e in os.scandir(final.parent) if pattern.fullmatch(e.name)]
    except OSError:
        return
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
        except OSError:  # locked: a live writer's file
            pass
        finally:
            os.close(fd)
