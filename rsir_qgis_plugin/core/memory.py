"""How many tiles fit in memory at once: bounds on the build's batch and on one onnxruntime run.

A batch's cost grows with its size and the model's input: the tiles read ahead (uint8, their stack
and the float32 input, several batches in flight) and the activations onnxruntime keeps in its arena
while it runs. `--batch-size 4096` of 128 px tiles asks for tens of GB; past the memory a process may
use (RAM, a cgroup limit, or an address-space limit set with ulimit -v), onnxruntime, numpy or a
library loaded later (faiss's OpenBLAS) fails with a traceback or a segfault. So batches are bounded
here, from the memory available when the build starts.
"""
from __future__ import annotations

import os
from pathlib import Path

# onnxruntime's arena per tile, as a multiple of the tile's float32 input. Measured at batch 64 on
# CPU: the bundled EfficientNet-lite model (128 px) holds ~28 MB per tile, ~140x its input; a ResNet-18
# at 64 px ~7x. The larger figure bounds both: an estimate must not under-count the models we ship.
ACTIVATION_FACTOR = 150
IN_FLIGHT_BATCHES = 6  # batches alive at once: the prefetch queue (core.pipeline, 4), one read, one embedded
TILE_BUFFER_BYTES = 6  # per value of a tile: the uint8 tile and its stacked copy (1 + 1), the float32 input (4)
MEMORY_FRACTION = 0.5  # of what is available: the rest is for the index, faiss and the rasters' caches


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of free RAM, its cgroup's room and its address
    space limit's room (None when none of them is known, as on Windows)."""
    limits = [room for room in (_meminfo_available(), _cgroup_room(), _address_space_room()) if room is not None]
    return max(0, min(limits)) if limits else None


def tile_memory(bands: int, size: int) -> int:
    """Bytes one tile of a batch costs while a build embeds it: its buffers in flight and its activations."""
    values = bands * size * size
    return values * (TILE_BUFFER_BYTES * IN_FLIGHT_BATCHES + 4 * ACTIVATION_FACTOR)


def batch_size_within_memory(bands: int, size: int, requested: int) -> tuple[int, str]:
    """(batch size, note): `requested`, or fewer tiles with a note saying why when it would not fit."""
    available = available_memory()
    if available is None:
        return requested, ""
    fits = max(1, int(available * MEMORY_FRACTION) // tile_memory(bands, size))
    if requested <= fits:
        return requested, ""
    return fits, (f"a batch of {requested} tiles of {size} px would need about "
                  f"{_size(requested * tile_memory(bands, size))} of memory, and this process has "
                  f"{_size(available)} available; embedding {fits} tiles at a time instead")


def run_rows_within_memory(bands: int, size: int) -> int | None:
    """The most tiles one onnxruntime run may hold (its activations only); None: no bound known."""
    available = available_memory()
    if available is None:
        return None
    return max(1, int(available * MEMORY_FRACTION) // (bands * size * size * 4 * ACTIVATION_FACTOR))


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """Room under a cgroup v2 memory limit (containers, systemd slices); None without one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def _address_space_room() -> int | None:
    """Room under RLIMIT_AS (ulimit -v): the limit less the address space this process maps already."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return soft - pages * os.sysconf("SC_PAGE_SIZE")


def _size(size: int) -> str:
    return f"{size / 2 ** 30:.1f} GB" if size >= 2 ** 30 else f"{size / 2 ** 20:.0f} MB"


def build_batch_size(index_dir: Path, model_path: Path | None, requested: int) -> tuple[int, str]:
    """(batch size, note) for a build: `requested` bounded for the tiles of the model it will use (the
    one given, else the index's, else the bundled default). A model or index that cannot be read is
    left to the build to report: the request is then returned as it is."""
    from .errors import RsirError
    from .model import read_model
    from .store.manifest import read_manifest

    try:
        manifest = read_manifest(index_dir) if model_path is None and Path(index_dir).is_dir() else None
        if manifest is not None:
            bands, size = int(manifest["model"]["bands"]), int(manifest["model"]["input_size"])
        else:
            contract = read_model(model_path).contract
            bands, size = contract.bands, contract.input_size
    except (RsirError, OSError, KeyError, TypeError, ValueError):
        return requested, ""
    return batch_size_within_memory(bands, size, requested)
