"""Loading and unloading the plugin the way QGIS does, and the dependency check it runs on load."""
from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QEvent
from qgis.PyQt.QtWidgets import QAction, QDialog, QToolBar

import rsir_qgis_plugin
from rsir_qgis_plugin import dependencies

ROOT = Path(__file__).resolve().parents[2]


def rsir_objects(window, kind):
    return [w for w in window.findChildren(kind) if w.objectName().startswith("rsir")]


def test_load_and_unload_leave_nothing_behind(qgis_iface, project):
    window = qgis_iface.mainWindow()
    registry = QgsApplication.processingRegistry()
    plugin = rsir_qgis_plugin.classFactory(qgis_iface)
    plugin.initGui()

    names = {a.objectName() for a in rsir_objects(window, QAction)}
    assert {"rsirFindSimilar", "rsirBuildIndex"} <= names
    assert rsir_objects(window, QToolBar), "the rsir toolbar is missing"
    toolbar_actions = {a.objectName() for a in rsir_objects(window, QToolBar)[0].actions()}
    assert toolbar_actions == {"rsirFindSimilar", "rsirBuildIndex", "rsirCompareDates", "rsirShowResults"}
    assert registry.providerById("rsir") is not None
    assert {a.id() for a in registry.providerById("rsir").algorithms()} == {
        "rsir:build_index", "rsir:find_similar", "rsir:change_hotspots", "rsir:find_similar_change",
        "rsir:map_matches", "rsir:estimate_precision", "rsir:export_chips"}

    plugin.find_action.trigger()
    assert qgis_iface.mapCanvas().mapTool() is plugin.map_tool
    assert plugin.dock.isVisibleTo(window)
    plugin.compare_action.trigger()  # the Compare dates window and its map tool go on unload too
    plugin.change.dialog.draw_button.click()
    assert qgis_iface.mapCanvas().mapTool() is plugin.change.map_tool

    plugin.unload()
    QgsApplication.processEvents()
    QgsApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # deleteLater -> actual deletion
    assert rsir_objects(window, QAction) == []
    assert rsir_objects(window, QToolBar) == []
    assert rsir_objects(window, QgsDockWidget) == []
    assert rsir_objects(window, QDialog) == []
    assert registry.providerById("rsir") is None
    assert qgis_iface.mapCanvas().mapTool() is None


def test_package_imports_nothing_heavy():
    """QGIS imports the plugin at start-up: onnxruntime, faiss, rasterio (and numpy) must not come with it.

    Only what the plugin adds counts: QGIS >= 3.34 imports numpy itself.
    """
    code = ("import sys, qgis.core, qgis.gui; before = set(sys.modules); "
            "import rsir_qgis_plugin, rsir_qgis_plugin.plugin, "
            "rsir_qgis_plugin.processing.provider, rsir_qgis_plugin.gui.search_controller, "
            "rsir_qgis_plugin.gui.build_controller, rsir_qgis_plugin.gui.dependency_prompt; "
            "print(sorted(m for m in ('onnxruntime', 'faiss', 'rasterio', 'numpy') "
            "if m in sys.modules and m not in before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_plugin_module_imports_engine_lazily():
    """plugin.py and the GUI import the engine inside functions only (a missing package is a message)."""
    heavy = {"onnxruntime", "faiss", "rasterio"}
    for path in [ROOT / "rsir_qgis_plugin" / "plugin.py", *(ROOT / "rsir_qgis_plugin" / "gui").glob("*.py")]:
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in heavy for n in names), f"{path.name} imports {names} at load"
            assert not any(n.startswith(("core.builder", "core.search", "core.store", "core.embedder"))
                           for n in names if isinstance(node, ast.ImportFrom) and node.level), path.name


def test_missing_package_gives_a_message_with_an_install_button(qgis_iface, project, monkeypatch):
    from qgis.PyQt.QtWidgets import QPushButton

    real = dependencies.is_installed
    monkeypatch.setattr(dependencies, "is_installed", lambda module: module != "faiss" and real(module))
    plugin = rsir_qgis_plugin.classFactory(qgis_iface)
    plugin.initGui()
    try:
        items = qgis_iface.messageBar().items()
        texts = [i.text() for i in items]
        assert any("faiss-cpu" in t for t in texts), texts
        buttons = [b for i in items for b in i.findChildren(QPushButton) if b.objectName() == "rsirInstallButton"]
        assert len(buttons) == 1 and "faiss-cpu" in buttons[0].text()
        assert plugin.dependencies.task is None, "nothing may be installed before the user asks"
        # An engine action refuses to start and does not stack a second message.
        assert plugin.search_box(qgis_iface.mapCanvas().extent()) is None
        assert len([i for i in qgis_iface.messageBar().items() if "faiss-cpu" in i.text()]) == 1
    finally:
        plugin.unload()
        qgis_iface.messageBar().clearWidgets()


def test_pip_command_pins_numpy_and_targets_the_private_folder(tmp_path):
    python = dependencies.find_qgis_python()
    assert python is not None and python.is_file()
    command = dependencies.pip_command(python, tmp_path, ["faiss-cpu"], "1.24.2")
    assert command[:4] == [str(python), "-m", "pip", "install"]
    assert "numpy==1.24.2" in command and "faiss-cpu" in command and "--only-binary=:all:" in command
    assert command[command.index("--target") + 1] == str(tmp_path)
    # The pin follows QGIS's numpy, whatever its major version; no numpy at all leaves pip free.
    assert "numpy==2.2.4" in dependencies.pip_command(python, tmp_path, ["faiss-cpu"], "2.2.4")
    assert not [a for a in dependencies.pip_command(python, tmp_path, ["faiss-cpu"], None) if a.startswith("numpy")]
    # The running numpy is read without importing numpy.
    import numpy

    assert dependencies.running_numpy_version() == numpy.__version__


def test_import_check_runs_in_a_fresh_interpreter(tmp_path):
    python = dependencies.find_qgis_python()
    (tmp_path / "rsir_probe_ok.py").write_text("")
    (tmp_path / "rsir_probe_bad.py").write_text("import numpy._no_such_module\n")
    good = subprocess.run(dependencies.import_check_command(python, tmp_path, ["rsir_probe_ok"]),
                          capture_output=True, text=True)
    bad = subprocess.run(dependencies.import_check_command(python, tmp_path, ["rsir_probe_ok", "rsir_probe_bad"]),
                         capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.strip() == "ok"
    assert bad.returncode != 0 and "_no_such_module" in bad.stderr


def test_installer_streams_pip_output_to_the_log_and_stops_on_cancel():
    """dependencies.run_streamed, which install_packages runs pip with: each line to the log callback as
    it comes, the process stopped when the cancellation check turns true, a failure's last lines."""
    from rsir_qgis_plugin.core.errors import RsirError

    python = str(dependencies.find_qgis_python())
    slow = [python, "-c", "import time\nfor i in range(200): print('line', i, flush=True); time.sleep(0.05)"]
    logged: list[str] = []
    started = time.monotonic()
    output = dependencies.run_streamed(slow, logged.append, lambda: len(logged) >= 3)
    assert logged == ["line 0", "line 1", "line 2"] and output.splitlines() == logged
    assert time.monotonic() - started < 5, "the process was not stopped on cancel"
    failing = [python, "-c", "import sys\nprint('resolving'); print('no matching wheel'); sys.exit(3)"]
    with pytest.raises(RsirError, match=r"(?s)pip failed \(exit 3\).*no matching wheel"):
        dependencies.run_streamed(failing, logged.append, lambda: False)


def test_installer_refuses_another_python(tmp_path):
    """pip of a Python that is not QGIS's would install wheels QGIS cannot import: refused before pip runs."""
    from rsir_qgis_plugin.core.errors import RsirError

    other = tmp_path / "python3"
    other.write_text("#!/bin/sh\necho 3.0 /elsewhere\n")
    other.chmod(0o755)
    with pytest.raises(RsirError, match="is not the Python QGIS runs"):
        dependencies.check_interpreter(other, ["faiss-cpu"])


def test_qgis_python_found_beside_a_qgis_executable(tmp_path):
    """Inside QGIS on Windows sys.executable is qgis-bin.exe; pip must run with python.exe instead."""
    prefix = tmp_path / "apps" / "Python312"
    prefix.mkdir(parents=True)
    (prefix / "python.exe").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    found = dependencies.find_qgis_python(str(bin_dir / "qgis-bin.exe"), str(prefix), "win32")
    assert found == prefix / "python.exe"
    assert dependencies.find_qgis_python(str(bin_dir / "qgis-bin.exe"), str(tmp_path / "nowhere"), "win32") is None


def test_qgis_python_is_the_prefix_one_not_a_python_on_path(tmp_path):
    """Embedded in QGIS on Linux, sys.executable is whatever "python3" PATH finds (seen: a pyenv shim)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / f"python{version}").write_text("")
    (tmp_path / "shims").mkdir()
    (tmp_path / "shims" / "python3").write_text("")
    found = dependencies.find_qgis_python(str(tmp_path / "shims" / "python3"), str(tmp_path / "usr"), "linux")
    assert found == tmp_path / "usr" / "bin" / f"python{version}"


def test_interpreter_probe_recognises_this_python():
    python = dependencies.find_qgis_python()
    probe = subprocess.run([str(python), "-c", dependencies.IDENTITY_PROBE], capture_output=True, text=True)
    assert probe.stdout.strip() == dependencies.interpreter_identity()
    other = subprocess.run(["/usr/bin/python3", "-c", dependencies.IDENTITY_PROBE], capture_output=True, text=True)
    if Path(sys.exec_prefix).resolve() != Path("/usr"):  # in a venv: Debian's python is another installation
        assert other.stdout.strip() != dependencies.interpreter_identity()


def test_dock_settings_and_visibility_persist_across_loads(qgis_iface, project):
    from rsir_qgis_plugin.core.params import SearchParams

    plugin = rsir_qgis_plugin.classFactory(qgis_iface)
    plugin.initGui()
    dock = plugin.dock
    dock.k_spin.setValue(7)
    dock.score_spin.setValue(0.4)
    dock.tta_check.setChecked(True)
    dock.overlap_check.setChecked(False)
    dock.hide()
    plugin.unload()

    again = rsir_qgis_plugin.classFactory(qgis_iface)
    again.initGui()
    try:
        assert again.dock.search_settings().to_params() == SearchParams(k=7, tta=True, exclude_query_overlap=False,
                                                                       min_score=0.4)
        assert not again.dock.isVisibleTo(qgis_iface.mainWindow())
    finally:
        again.unload()


def test_index_folder_defaults_next_to_the_project_file(plugin, project, tmp_path):
    from rsir_qgis_plugin.settings import remember_index_dir

    assert Path(plugin.dock.index_dir()).name == "rsir_index"  # unsaved project: the home folder
    project.write(str(tmp_path / "survey.qgz"))
    assert Path(plugin.dock.index_dir()) == tmp_path / "survey_rsir_index"
    # A folder the user chose is kept in the project and wins over the default.
    remember_index_dir(tmp_path / "elsewhere", project)
    project.write()
    project.read(str(tmp_path / "survey.qgz"))
    assert Path(plugin.dock.index_dir()) == tmp_path / "elsewhere"
