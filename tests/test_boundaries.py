"""Architecture boundaries: the engine (rsir_qgis_plugin/core) runs without QGIS and Qt, and the tasks
never reach into the GUI.

core/ is what the command line, the Processing algorithms and the tasks all call; it must import neither
qgis nor PyQt, so it runs headless, in tests without QGIS, and on any QGIS or Qt version. tasks.py runs in
QgsTask worker threads, where widgets must not be touched: it must not import rsir_qgis_plugin.gui.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rsir_qgis_plugin"
CORE = PACKAGE / "core"
FORBIDDEN_IN_CORE = ("qgis", "PyQt5", "PyQt6", "sip")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module, at any depth (functions included)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            # `from . import gui` names a module too.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_source_imports_no_qgis_or_qt():
    assert len(core_modules()) > 10
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}"
           for path in core_modules() for line, module in imported_modules(path)
           if module.split(".")[0] in FORBIDDEN_IN_CORE]
    assert not bad, "rsir_qgis_plugin/core must not import QGIS or Qt:\n" + "\n".join(bad)


def test_core_source_imports_nothing_of_the_plugin_outside_core():
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}"
           for path in core_modules() for line, module in imported_modules(path)
           if module.startswith("rsir_qgis_plugin.") and not module.startswith("rsir_qgis_plugin.core")]
    assert not bad, "rsir_qgis_plugin/core must not import the plugin around it:\n" + "\n".join(bad)


def test_importing_every_core_module_loads_no_qgis_or_qt():
    """The same at run time, in a fresh interpreter: what the imports pull in, transitively."""
    names = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                   for p in core_modules())
    script = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_IN_CORE!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing rsir_qgis_plugin.core.* loaded {loaded}"


def test_tasks_never_import_the_gui():
    bad = [f"tasks.py:{line}: {module}" for line, module in imported_modules(PACKAGE / "tasks.py")
           if module == "rsir_qgis_plugin.gui" or module.startswith("rsir_qgis_plugin.gui.")]
    assert not bad, "tasks.py runs in worker threads and must not import the GUI:\n" + "\n".join(bad)


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the plugin, the training package and the exporter."""
    files = [p for top in ("rsir_qgis_plugin", "training", "export") for p in sorted((ROOT / top).rglob("*.py"))]
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in files}


def test_no_module_imports_another_modules_private_names():
    """A name with a leading underscore is its module's own: what another module needs is made public."""
    modules = project_modules()
    bad = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.level or node.module in modules):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name} from {source}"
                    for alias in node.names if alias.name.startswith("_") and source != name]
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)


def test_core_has_no_import_cycles():
    """Every import counts, those inside functions too: a cycle there is still two modules that each need
    the other, and it is one refactoring away from failing at import time."""
    modules = {name: path for name, path in project_modules().items() if name.startswith("rsir_qgis_plugin.core")}
    graph = {name: sorted({module for _, module in imported_modules(path) if module in modules and module != name})
             for name, path in modules.items()}
    cycles = []
    for start in graph:
        # Depth-first from each module, looking for a path back to it through modules named after it
        # (so each cycle is reported once, from its smallest name).
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt > start and nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles inside core:\n" + "\n".join(cycles)
