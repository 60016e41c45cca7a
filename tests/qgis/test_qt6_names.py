"""QGIS 4 (Qt6) readiness: every Qt name that rsir_qgis_plugin/, tests/ and scripts/ use exists in PyQt6 too,
and no QGIS enum value is reached by its short name.

No Debian suite has QGIS 4, so the Qt names are resolved rather than run: `ast` collects every attribute
chain rooted at a name imported from qgis.PyQt (`Qt.ItemDataRole.UserRole`, `QImage.Format.Format_RGB888`,
`QDialogButtonBox.StandardButton.Ok`, ...) and a subprocess resolves each chain against PyQt6 from PyPI
(installed into .venv by scripts/setup). PyQt6 is never imported in this process, which holds QGIS's PyQt5.
PyQt6 has only the fully qualified enum names (no `Qt.UserRole`), and no `exec_()`.

QGIS's own enums are checked in this process against the QGIS that runs the tests: a value reached through
its class instead of its enum (`QgsPalLayerSettings.OverPoint` rather than
`QgsPalLayerSettings.Placement.OverPoint`) is a short name; QGIS 3.40 already resolves some of those to
another enum (TypeError), and QGIS 4 drops them.
"""
from __future__ import annotations

import ast
import enum
import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("rsir_qgis_plugin", "tests", "scripts")
QGIS_MODULES = ("qgis.core", "qgis.gui", "qgis.analysis")

# Chains that may name what PyQt6 lacks, by file and function, each with the only root allowed there and why.
# fields.py: QGIS < 3.38 (always PyQt5) takes QgsField types as QVariant.Type and rejects QMetaType.Type;
# that function runs only there, and QGIS 4 (PyQt6, whose QVariant has no type enum) is >= 3.38.
QT6_EXEMPT = {("rsir_qgis_plugin/fields.py", "_qvariant_types"): "QVariant"}


@dataclass(frozen=True)
class Use:
    where: str      # file:line
    module: str     # what the root name was imported from, e.g. "qgis.PyQt.QtCore" ("qgis.PyQt" for a module)
    chain: str      # e.g. "Qt.ItemDataRole.UserRole"; the root alone for an import
    function: str   # the innermost enclosing function, "" at module level


def python_files() -> list[Path]:
    return sorted(p for top in SCANNED for p in (ROOT / top).rglob("*.py"))


def collect(source: str, filename: str, roots: tuple[str, ...]) -> tuple[list[Use], list[str]]:
    """Every maximal attribute chain rooted at a name imported from a module under `roots`, every
    import of such a name, and (second list) where `.exec_` is used."""
    tree = ast.parse(source, filename)
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(roots):
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
    uses, exec_calls = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(roots):
            uses += [Use(f"{filename}:{node.lineno}", node.module, alias.name, "") for alias in node.names]

    def visit(node: ast.AST, function: str, inside_chain: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Attribute):
            if node.attr == "exec_":
                exec_calls.append(f"{filename}:{node.lineno}")
            parts, root = [node.attr], node.value
            while isinstance(root, ast.Attribute):
                parts.append(root.attr)
                root = root.value
            if not inside_chain and isinstance(root, ast.Name) and root.id in imported:
                chain = ".".join([root.id, *reversed(parts)])
                uses.append(Use(f"{filename}:{node.lineno}", imported[root.id], chain, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function, isinstance(node, ast.Attribute) and child is node.value)

    visit(tree, "", False)
    return uses, exec_calls


# Runs in a fresh interpreter: reads [[module, chain], ...] as JSON, prints the chains PyQt6 lacks.
# Qt6 moved some classes between QtCore, QtGui and QtWidgets (QAction, QShortcut, QUndoStack: QtWidgets ->
# QtGui) and QGIS 4's qgis.PyQt.QtWidgets shim re-exports them where PyQt5 had them, so a name imported
# from any of those three modules is looked up in all three together.
RESOLVER = r"""
import importlib, json, sys
try:
    import PyQt6.QtCore, PyQt6.QtGui, PyQt6.QtWidgets
except ImportError as error:
    print(f"PyQt6 does not import ({error}): scripts/setup installs it into .venv", file=sys.stderr)
    sys.exit(3)
GROUP = ("QtCore", "QtGui", "QtWidgets")
missing = []
for module, chain in json.load(sys.stdin):
    parts = chain.split(".")
    if module == "qgis.PyQt":  # `from qgis.PyQt import QtCore`: the root is a module
        module, parts = "qgis.PyQt." + parts[0], parts[1:]
    name = module.rsplit(".", 1)[1]
    try:
        homes = [importlib.import_module("PyQt6." + m) for m in (GROUP if name in GROUP else (name,))]
    except ImportError:
        missing.append([module, chain])
        continue
    for home in homes:
        obj = home
        try:
            for part in parts:
                obj = getattr(obj, part)
            break
        except AttributeError:
            continue
    else:
        missing.append([module, chain])
print(json.dumps(missing))
"""


def pyqt6_missing(uses: list[Use]) -> set[tuple[str, str]]:
    """The (module, chain) pairs of `uses` that PyQt6 lacks, resolved in a subprocess."""
    wanted = sorted({(u.module, u.chain) for u in uses})
    done = subprocess.run([sys.executable, "-c", RESOLVER], input=json.dumps(wanted), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {tuple(pair) for pair in json.loads(done.stdout)}


def qt_uses() -> tuple[list[Use], list[str], set]:
    uses, exec_calls, exempted = [], [], set()
    for path in python_files():
        rel = path.relative_to(ROOT).as_posix()
        found, execs = collect(path.read_text(encoding="utf-8"), rel, ("qgis.PyQt", "PyQt5"))
        exec_calls += execs
        for use in found:
            if use.module == "qgis.PyQt" and use.chain.split(".")[0] == "sip":
                continue  # sip is not Qt API (PyQt6.sip exists as well)
            exempt_root = QT6_EXEMPT.get((rel, use.function))
            if exempt_root and use.chain.split(".")[0] == exempt_root and "." in use.chain:
                exempted.add((rel, use.function))
                continue
            uses.append(use)
    return uses, exec_calls, exempted


def test_every_qt_name_exists_in_pyqt6():
    uses, exec_calls, exempted = qt_uses()
    assert len(uses) > 100, "the collector found too few Qt names: is it still looking in the right places?"
    direct = sorted({u.where for u in uses if u.module.startswith("PyQt5")})
    assert not direct, f"import Qt through qgis.PyQt (QGIS 4 maps it to PyQt6), not PyQt5: {direct}"
    assert not exec_calls, f"PyQt6 has no exec_(), use exec(): {exec_calls}"
    assert exempted == set(QT6_EXEMPT), f"stale QT6_EXEMPT entries: {set(QT6_EXEMPT) - exempted}"
    missing = pyqt6_missing(uses)
    lacking = sorted(f"{u.where}: {u.chain}" for u in uses if (u.module, u.chain) in missing)
    assert not lacking, "PyQt6 lacks these names (use the fully qualified enum name):\n" + "\n".join(lacking)


def test_the_qt6_check_reports_short_names():
    """The check fails on what QGIS 4 would fail on, and passes the qualified forms and moved classes."""
    source = (
        "from qgis.PyQt.QtCore import Qt\n"
        "from qgis.PyQt.QtWidgets import QAction, QDialog\n"
        "from qgis.PyQt import QtGui\n"
        "ROLE = Qt.UserRole\n"
        "GOOD = Qt.ItemDataRole.UserRole\n"
        "def run(dialog):\n"
        "    QtGui.QImage.Format_RGB888, QtGui.QImage.Format.Format_RGB888\n"
        "    return dialog.exec_() == QDialog.Accepted, QAction\n"
    )
    uses, exec_calls = collect(source, "example.py", ("qgis.PyQt",))
    assert exec_calls == ["example.py:8"]
    assert {u.chain for u in uses if u.function == "run"} == {
        "QtGui.QImage.Format_RGB888", "QtGui.QImage.Format.Format_RGB888", "QDialog.Accepted"}
    missing = pyqt6_missing(uses)
    assert sorted(chain for _, chain in missing) == ["QDialog.Accepted", "Qt.UserRole", "QtGui.QImage.Format_RGB888"]


def _is_enum_value(value) -> bool:
    return type(type(value)).__name__ == "enumtype" or isinstance(value, enum.Enum)  # sip enum, Python enum


def short_qgis_names(uses: list[Use]) -> list[str]:
    """Uses that reach an enum value of the running QGIS through a class instead of through its enum."""
    short = []
    for use in uses:
        module = importlib.import_module(use.module)
        parts = use.chain.split(".")
        objects = [getattr(module, parts[0], None)]
        try:
            for part in parts[1:]:
                objects.append(getattr(objects[-1], part))
        except AttributeError:
            continue  # a newer QGIS's name, behind a hasattr (QgsTask.Flag.Silent): nothing to judge here
        for parent, value in zip(objects, objects[1:]):
            if _is_enum_value(value) and parent is not type(value) and not (
                    isinstance(parent, type) and issubclass(parent, enum.Enum)):
                short.append(f"{use.where}: {use.chain}")
                break
    return short


def test_no_short_qgis_enum_names():
    uses = []
    for path in python_files():
        uses += collect(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix(), QGIS_MODULES)[0]
    assert len(uses) > 100, "the collector found too few QGIS names"
    short = short_qgis_names(uses)
    assert not short, "use the enum's qualified name (it exists on QGIS 3.22 too):\n" + "\n".join(short)
    # ...and the check knows a short name when it meets one.
    example = collect("from qgis.core import QgsTask\nA = QgsTask.CanCancel\nB = QgsTask.Flag.CanCancel\n",
                      "example.py", QGIS_MODULES)[0]
    assert short_qgis_names(example) == ["example.py:2: QgsTask.CanCancel"]
