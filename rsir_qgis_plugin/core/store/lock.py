"""The writer lock: one process at a time may change an index directory."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import IndexLockedError
from .files import folder_error


class WriterLock:
    """An exclusive, non-blocking lock on the index directory; the OS drops it if the writer dies."""

    def __init__(self, index_dir: Path):
        self.path = Path(index_dir) / ".lock"
        self._handle = None

    def __enter__(self) -> "WriterLock":
        try:
            self._handle = open(self.path, "a+")
        except OSError as exc:
            raise folder_error(exc, self.path.parent, "cannot write in the index folder") from None
        try:
            _lock_file(self._handle)
        except OSError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "unknown"
            self._handle.close()
            raise IndexLockedError(f"{self.path.parent}: another process (pid {holder}) is writing this "
                                   "index; wait for it to finish or cancel it") from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()
        return self

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
