"""The rsir algorithms through the real qgis_process, started by scripts/run-qgis --process (as the
README tells a user on Debian), in a throw-away profile with the plugin linked from this checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_QGIS = ROOT / "scripts" / "run-qgis"

pytestmark = [pytest.mark.skipif(not (shutil.which("qgis_process.bin") or shutil.which("qgis_process")),
                                 reason="qgis_process is not installed"),
              pytest.mark.slow]  # starts QGIS processes


def run_qgis_process(*args: str, profiles: Path | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("RSIR_QGIS_PROFILES", None)
    if profiles is not None:
        env["RSIR_QGIS_PROFILES"] = str(profiles)
    return subprocess.run([str(RUN_QGIS), "--process", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)


def test_qgis_process_names_failed_rasters_and_fails_when_nothing_was_indexed(tmp_path, town_half,
                                                                              tiny_model, truncated):
    """Issue 19 item 6 with the real qgis_process: a truncated TIFF beside a good raster exits 0 with
    the raster and its reason in FAILED; only broken rasters exit 1, each reason printed once."""
    common = [f"MODEL={tiny_model}", "TILE_SIZE=128", "STRIDE=128", "DEVICE=1"]
    profiles = tmp_path / "profiles"

    some = run_qgis_process("run", "rsir:build_index", "--", f"RASTERS={town_half}",
                            f"RASTERS={truncated[0]}",
                            f"INDEX={tmp_path / 'index'}", *common, profiles=profiles)
    output = some.stdout + some.stderr
    assert some.returncode == 0, output
    failed_lines = [line for line in some.stdout.splitlines() if line.startswith("FAILED:")]
    assert len(failed_lines) == 1 and f"{truncated[0]}: pixels in window" in failed_lines[0], output
    assert output.count(f"{truncated[0]}: pixels in window") == 2, "once in the log, once in FAILED"

    none = run_qgis_process("run", "rsir:build_index", "--", *(f"RASTERS={p}" for p in truncated),
                            f"INDEX={tmp_path / 'none'}", *common, profiles=profiles)
    output = none.stdout + none.stderr
    assert none.returncode == 1, output
    assert "no raster could be indexed" in output and "2 raster(s) failed" in output
    for path in truncated:
        assert output.count(f"{path}: pixels in window") == 1, output
    assert not (tmp_path / "none" / "manifest.json").exists()


def test_run_qgis_keeps_its_profile_in_the_checkout():
    """Issue 19 item 17: by default the profile is .qgis-profile/ in this checkout (ignored by git),
    not a folder under /tmp that every clone on the machine shares."""
    listed = run_qgis_process("plugins", profiles=None)
    assert listed.returncode == 0, listed.stderr
    assert "* rsir_qgis_plugin" in listed.stdout  # loaded, and it brings a Processing provider
    assert (ROOT / ".qgis-profile" / "profiles" / "default" / "python" / "plugins" / "rsir_qgis_plugin"
            / "metadata.txt").exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", ".qgis-profile/"], cwd=ROOT)
    assert ignored.returncode == 0, ".qgis-profile/ must be in .gitignore"


def test_qgis_process_change_hotspots_writes_the_pasted_block_first(tmp_path):
    """Search through time from the command line of QGIS (issue 23 item 5): rsir:change_hotspots to a GeoJSON."""
    import json

    from tests.core.change_data import AT_A, TILE, window_box
    from tests.qgis.change_dates import make_dates

    dates = make_dates(tmp_path)
    out = tmp_path / "changes.geojson"
    run = run_qgis_process("run", "rsir:change_hotspots", "--", f"INDEX={dates.index}", f"BEFORE={dates.before}",
                           f"AFTER={dates.one}", "K=3", f"OUTPUT={out}", profiles=tmp_path / "profiles")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "49 of 49 places compared" in run.stdout
    features = sorted(json.loads(out.read_text())["features"], key=lambda f: f["properties"]["rank"])
    first = features[0]
    assert first["properties"]["before"] == str(dates.before) and first["properties"]["after"] == str(dates.one)
    xs, ys = zip(*first["geometry"]["coordinates"][0])
    expected = window_box(dates.before, (*AT_A, TILE, TILE))
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx(expected, abs=1e-3)
