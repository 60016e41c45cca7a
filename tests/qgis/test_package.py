"""scripts/package builds the zip QGIS's Plugin Manager installs."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_zip_holds_the_plugin_and_nothing_else(tmp_path):
    out = tmp_path / "rsir.zip"
    subprocess.run([str(ROOT / "scripts" / "package"), str(out)], check=True, capture_output=True, text=True)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert archive.read("rsir_qgis_plugin/metadata.txt") == (ROOT / "metadata.txt").read_bytes()
        archive.extractall(tmp_path / "plugins")
    assert all(n.startswith("rsir_qgis_plugin/") for n in names)
    for needed in ("__init__.py", "plugin.py", "icon.png", "core/builder.py", "gui/icons/find.png",
                   "processing/provider.py"):
        assert f"rsir_qgis_plugin/{needed}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
    assert "rsir_qgis_plugin/models/default.onnx" in names
    # The superseded default, for the indexes built with it (issue 22).
    assert "rsir_qgis_plugin/models/previous/rsir-lite0-da-sncace-aid150-128px-ood.onnx" in names

    # The extracted folder is importable on its own and QGIS finds classFactory in it.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import rsir_qgis_plugin as p; "
            "assert p.__file__.startswith(sys.argv[1]), p.__file__; assert callable(p.classFactory)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "plugins")], check=True, cwd=tmp_path)


def test_package_refuses_to_ship_without_the_model_unless_asked(tmp_path):
    """A checkout whose model is missing (e.g. not built yet) must not produce a zip that cannot search."""
    import shutil

    tree = tmp_path / "checkout"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "package", tree / "scripts" / "package")
    shutil.copy(ROOT / "metadata.txt", tree / "metadata.txt")
    (tree / "rsir_qgis_plugin").mkdir()
    for name in ("__init__.py", "icon.png"):
        shutil.copy(ROOT / "rsir_qgis_plugin" / name, tree / "rsir_qgis_plugin" / name)
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    refused = subprocess.run([str(tree / "scripts" / "package"), str(tmp_path / "x.zip")], capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "bundled model" in refused.stderr
    assert not (tmp_path / "x.zip").exists()
    allowed = subprocess.run([str(tree / "scripts" / "package"), "--no-model", str(tmp_path / "dev.zip")],
                             capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr
    with zipfile.ZipFile(tmp_path / "dev.zip") as archive:
        assert "rsir_qgis_plugin/metadata.txt" in archive.namelist()
