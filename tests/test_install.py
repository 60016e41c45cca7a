"""rsir as a pip-installed package: `pip install .` and `pip install -e .` into a fresh venv made from
Debian's python3 with --system-site-packages give the `rsir` and `rsir-train` commands, and the
installed (not editable) copy ships the bundled models, so it indexes and searches on its own."""
import json
from pathlib import Path

import pytest

from tests.installed import ROOT, copy_sources, installed_rsir, make_venv, pip_install, run

pytestmark = pytest.mark.slow  # pip installs into fresh venvs

pytest.importorskip("rasterio")


def site_packages_of(bin_dir: Path) -> Path:
    return Path(run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=bin_dir).stdout.strip())


def test_pip_install_gives_an_rsir_command_that_indexes_and_searches_with_the_bundled_model(
        tmp_path_factory, tmp_path, town_crop):
    bin_dir = installed_rsir(tmp_path_factory)
    installed = site_packages_of(bin_dir) / "rsir_qgis_plugin"
    work = tmp_path / "work"  # outside the checkout, and no PYTHONPATH: only the installed rsir can answer
    work.mkdir()
    where = run([bin_dir / "python", "-c", "import rsir_qgis_plugin; print(rsir_qgis_plugin.__file__)"], work)
    assert Path(where.stdout.strip()).parent == installed
    bundled = ROOT / "rsir_qgis_plugin" / "models"
    previous = [p.relative_to(bundled) for p in (bundled / "previous").glob("*.onnx")]  # for older indexes
    assert len(previous) == 2
    for model in ("default.onnx", "default-int8.onnx", "README.md", "LICENSE-Apache-2.0", *previous):
        shipped = installed / "models" / model
        assert shipped.stat().st_size == (bundled / model).stat().st_size
    icons = sorted(p.name for p in (ROOT / "rsir_qgis_plugin" / "gui" / "icons").glob("*.png"))
    assert (installed / "icon.png").is_file() and len(icons) >= 3
    assert sorted(p.name for p in (installed / "gui" / "icons").glob("*.png")) == icons
    # pyproject.toml lists its packages (gui/ is a namespace package): a new subpackage left off the list
    # would be missing from every pip install.
    purelib = site_packages_of(bin_dir)
    for package in ("rsir_qgis_plugin", "training", "export"):
        sources = {p.relative_to(ROOT) for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}
        shipped = {p.relative_to(purelib) for p in (purelib / package).rglob("*.py")}
        assert sources - shipped == set(), "pyproject.toml's packages leave these out of the install"

    # The plugin's version (metadata.txt, for QGIS) and the pip package's (pyproject.toml) are one.
    version = next(line.split("=", 1)[1].strip() for line in (ROOT / "metadata.txt").read_text().splitlines()
                   if line.startswith("version="))
    assert f'\nversion = "{version}"\n' in (ROOT / "pyproject.toml").read_text()
    doctor = run([bin_dir / "rsir", "doctor"], work).stdout  # exit 0: indexing and search can run
    assert f"[ok]       rsir: {version} ({installed})" in doctor and "model default.onnx: opset 17" in doctor

    usage = run([bin_dir / "rsir", "--help"], work).stdout
    assert usage.startswith("usage: rsir ") and "index" in usage and "search" in usage
    assert run([bin_dir / "python", "-m", "rsir_qgis_plugin", "--help"], work).stdout == usage  # the alias

    raster = Path(town_crop.rename(work / "town.tif"))
    run([bin_dir / "rsir", "index", "build", "idx", "town.tif"], work)  # no --model: the bundled default
    info = run([bin_dir / "rsir", "index", "info", str(work / "idx")], work).stdout
    assert f"{installed / 'models' / 'default.onnx'}" in info and "25 tiles from 1 raster(s)" in info

    import rasterio

    with rasterio.open(raster) as src:  # the box of the first tile: 128 px, the bundled model's tile size
        left, top = src.bounds.left, src.bounds.top
        box = [left, top - 128 * src.res[1], left + 128 * src.res[0], top]
    found = run([bin_dir / "rsir", "search", "idx", "--raster", "town.tif", "--bbox", *box, "-k", "5",
                 "--keep-overlap"], work)
    hits = json.loads(found.stdout)["features"]
    assert [hit["properties"]["rank"] for hit in hits] == [1, 2, 3, 4, 5]
    assert all(hit["properties"]["raster"] == str(raster) for hit in hits)
    scores = [hit["properties"]["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99 > scores[1]  # the tile finds itself
    (xs, ys) = zip(*hits[0]["geometry"]["coordinates"][0])
    assert [min(xs), min(ys), max(xs), max(ys)] == pytest.approx([box[0], box[1], box[2], box[3]])


def test_rsir_train_is_installed_too(tmp_path_factory, tmp_path):
    pytest.importorskip("torch")
    usage = run([installed_rsir(tmp_path_factory) / "rsir-train", "--help"], tmp_path).stdout
    assert usage.startswith("usage: ") and "--data" in usage and "--backbone" in usage


def test_an_editable_install_runs_the_source_folder(tmp_path):
    source = copy_sources(tmp_path / "checkout")
    bin_dir = make_venv(tmp_path / "venv")
    pip_install(bin_dir, source, editable=True)
    work = tmp_path / "work"
    work.mkdir()
    probe = "from rsir_qgis_plugin.core.model import MODELS_DIR; print(MODELS_DIR)"
    where = run([bin_dir / "python", "-c", probe], work)
    assert Path(where.stdout.strip()) == source / "rsir_qgis_plugin" / "models"
    assert run([bin_dir / "rsir", "--help"], work).stdout.startswith("usage: rsir ")
    package = source / "rsir_qgis_plugin" / "__init__.py"
    package.write_text(package.read_text() + "\nEDITED_IN_PLACE = True\n")
    probe = "import rsir_qgis_plugin; print(rsir_qgis_plugin.EDITED_IN_PLACE)"
    edited = run([bin_dir / "python", "-c", probe], work)
    assert edited.stdout.strip() == "True"  # no reinstall needed
