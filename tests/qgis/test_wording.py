"""Issue 19 item 16, the wording: messages that fit the message bar, menu paths as QGIS shows them,
and a cancelled build reported as cancelled."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QPushButton, QTextBrowser

import rsir_qgis_plugin
from rsir_qgis_plugin import dependencies

BAR_WIDTH = 1024  # the message bar of a QGIS window on a 1280 px wide screen, side panels docked


def fits(item) -> bool:
    """Whether QGIS's message-bar item shows all of its text (no line scrolled out of sight)."""
    browsers = item.findChildren(QTextBrowser)
    assert browsers, "QgsMessageBarItem shows its text in a QTextBrowser"
    return all(b.verticalScrollBar().maximum() == 0 and b.horizontalScrollBar().maximum() == 0
               for b in browsers)


@pytest.mark.parametrize("absent", [("faiss",), ("onnxruntime", "faiss"),
                                    ("onnxruntime", "faiss", "rasterio")])
def test_missing_packages_message_fits_the_bar_and_details_has_the_rest(qgis_iface, project, monkeypatch,
                                                                        absent):
    real = dependencies.is_installed
    monkeypatch.setattr(dependencies, "is_installed", lambda module: module not in absent and real(module))
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    bar.resize(BAR_WIDTH, bar.sizeHint().height())
    bar.show()
    plugin = rsir_qgis_plugin.classFactory(qgis_iface)
    plugin.initGui()
    try:
        QgsApplication.processEvents()
        (item,) = bar.items()
        text = item.text()
        named = ["faiss-cpu"] + (["rasterio"] if "rasterio" in absent else [])
        assert "\n" not in text and all(name in text for name in named)
        assert fits(item), f"cut off at {BAR_WIDTH} px: {text!r}"
        details = [b for b in item.findChildren(QPushButton) if b.objectName() == "rsirDetailsButton"]
        assert len(details) == 1
        details[0].click()
        viewer = plugin.dependencies.details.viewer
        whole = viewer.text_edit.toPlainText()
        assert "the similarity index" in whole and "Nothing is installed without that click" in whole
        if "rasterio" in absent:
            assert "sudo apt install python3-rasterio" in whole and "sudo apt" not in text
    finally:
        plugin.unload()
        bar.clearWidgets()
        bar.hide()


PLUGIN = Path(rsir_qgis_plugin.__file__).resolve().parent
MENU = "Raster > rsir > "
ACTIONS = ("Build index...", "Diagnostics...")  # menu-only or dialog actions a message may send the user to


def _user_strings():
    """(file:line, text) of every string literal in the plugin that is not a docstring."""
    for path in sorted(PLUGIN.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                yield f"{path.relative_to(PLUGIN.parent)}:{node.lineno}", node.value


def test_messages_name_menu_entries_by_their_whole_path():
    """Issue 19 item 16: the entries are in the Raster menu (Raster > rsir), so a message that sends
    the user to one says "Raster > rsir > Build index...", never "rsir > Build index..." or the bare name."""
    wrong = []
    for where, text in _user_strings():
        short_path = any(not text[:i].endswith("Raster > ") for i in range(len(text))
                         if text.startswith("rsir > ", i))
        bare = [a for a in ACTIONS if a in text and text != a and f"{MENU}{a}" not in text]
        if short_path or bare:
            wrong.append(f"{where}: {text!r} (say '{MENU}{(bare or ACTIONS)[0]}')")
    assert not wrong, "\n".join(wrong)
