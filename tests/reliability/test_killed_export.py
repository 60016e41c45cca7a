"""A writer of an output killed before its rename leaves a temporary file beside the output: the next
write of that output removes it, and never a live writer's file or a user's own file."""
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import os, sys, time
from pathlib import Path
from rsir_qgis_plugin.core.atomic import atomic_output
with atomic_output(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half an export")
    print(tmp, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), 9)
    time.sleep(60)
"""


def start_writer(out: Path, how: str) -> tuple[subprocess.Popen, Path]:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out), how], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    return writer, Path(writer.stdout.readline().strip())


def test_a_killed_exports_temporary_file_is_removed_by_the_next_export(tmp_path, tiny_model, town_crop):
    index, out = tmp_path / "idx", tmp_path / "tiles.parquet"
    subprocess.run([sys.executable, "-m", "rsir_qgis_plugin", "index", "build", str(index), str(town_crop),
                    "--model", str(tiny_model), "--stride", "64"], cwd=ROOT, check=True, capture_output=True)
    killed, leftover = start_writer(out, "kill")
    assert killed.wait(30) == -signal.SIGKILL and leftover.is_file()
    live, writing = start_writer(out, "sleep")  # a writer of the same output still at work
    users_own = tmp_path / ".tiles.parquet.notes.tmp.parquet"  # not a name a writer makes
    users_own.write_text("mine")
    try:
        done = subprocess.run([sys.executable, "-m", "rsir_qgis_plugin", "index", "export", str(index),
                               "--geoparquet", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert out.is_file() and not leftover.exists()
        assert writing.is_file() and users_own.read_text() == "mine"
    finally:
        live.kill()
        live.wait(30)
    time.sleep(0.1)
    assert sorted(p.name for p in tmp_path.glob(".tiles.parquet.*")) == sorted([writing.name, users_own.name])
