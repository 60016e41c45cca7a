"""Real small tmpfs mounts for the reliability suite (a share that goes away, a disk that fills up)."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `mount_point` (created), unmounted on the way out.

    Needs root; a machine where mounting is not allowed (a container without CAP_SYS_ADMIN) skips.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        unmount(mount_point)


def unmount(mount_point: Path) -> None:
    """Unmount if mounted (lazily: a file a test left open must not keep the mount for ever)."""
    if os.path.ismount(mount_point):
        subprocess.run(["umount", "-l", str(mount_point)], check=True)
