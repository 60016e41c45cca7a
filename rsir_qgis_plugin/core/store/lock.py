"""The writer lock: one process at a time may change an index directory."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import IndexLockedError, IndexStoreError
from .files import folder_error, os_error_message, refuse_links

# Never through a link (a .lock linked to a user's file would be truncated by the pid written
# below), never truncated on open (it may be another writer's, holding its pid).
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class WriterLock:
    """An exclusive, non-blocking lock on the index directory; the OS drops it if the writer dies."""

    def __init__(self, index_dir: Path):
        self.path = Path(index_dir) / ".lock"
        self._handle = None

    def __enter__(self) -> WriterLock:
        self._handle = self._open()
        try:
            _lock_file(self._handle)
        except OSError:
            self._handle.seek(0)
            holder = self._handle.read(64).decode(errors="replace").strip() or "unknown"
            self._handle.close()
            raise IndexLockedError(f"{self.path.parent}: another process (pid {holder}) is writing this "
                                   "index; wait for it to finish or cancel it") from None
        try:
            refuse_links(self.path.parent)  # checked again now that no other rsir can change the folder
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(str(os.getpid()).encode())
        except BaseException as exc:
            self.__exit__()
            if isinstance(exc, OSError):  # a full disk, where even the pid does not fit
                raise os_error_message(exc, self.path.parent, "cannot write its lock file") from None
            raise
        return self

    def _open(self):
        """The lock file, opened without following a link; refused unless a plain file of this index's own."""
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP or self.path.is_symlink():
                raise IndexStoreError(f"{self.path}: is a symbolic link; rsir never writes through a link in "
                                      "an index folder (remove the link)") from None
            raise folder_error(exc, self.path.parent, "cannot write in the index folder") from None
        info = os.fstat(fd)
        # A hard link to a file elsewhere would be truncated as surely as a symbolic one.
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            os.close(fd)
            what = "not a plain file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file"
            raise IndexStoreError(f"{self.path}: {what}; rsir never writes through it (remove it)")
        # Unbuffered: a write that finds the disk full fails here, not again when the file is closed.
        return os.fdopen(fd, "r+b", buffering=0)

    def __exit__(self, *exc) -> None:
        _unlock_file(self._handle)
        self._handle.close()


if os.name == "nt":
    import msvcrt

    def _lock_file(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_file(handle) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock_file(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
