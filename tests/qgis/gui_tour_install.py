"""A scripted first start without onnxruntime/faiss: the message, the install button, pip, ready.

Not a pytest test: it installs real packages with pip into the QGIS profile's private folder.

    RSIR_TOUR_OUT=out/tour-install xvfb-run -s "-screen 0 1600x1000x24" \
        scripts/run-qgis --fresh --no-venv --code tests/qgis/gui_tour_install.py
"""
from __future__ import annotations

import os
from pathlib import Path

from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtGui import QGuiApplication
from qgis.PyQt.QtWidgets import QPushButton
from qgis.utils import iface, plugins

OUT = Path(os.environ.get("RSIR_TOUR_OUT", Path.cwd() / "out" / "tour-install")).resolve()
OUT.mkdir(parents=True, exist_ok=True)
LOG = open(OUT / "tour.log", "w")  # noqa: SIM115


def say(text: str) -> None:
    LOG.write(text + "\n")
    LOG.flush()


def shot(name: str) -> None:
    QGuiApplication.processEvents()
    QGuiApplication.primaryScreen().grabWindow(0).save(str(OUT / f"{name}.png"))
    say(f"screenshot {name}")


def press_install() -> None:
    iface.mainWindow().setGeometry(0, 0, 1600, 1000)
    shot("01_missing_packages")
    buttons = [b for item in iface.messageBar().items() for b in item.findChildren(QPushButton)
               if b.objectName() == "rsirInstallButton"]
    say(f"install buttons: {[b.text() for b in buttons]}")
    if not buttons:
        quit_qgis()
        return
    buttons[0].click()
    task = plugins["rsir_qgis_plugin"].dependencies.task
    task.failed.connect(lambda error: say(f"install failed: {error}"))
    QTimer.singleShot(3000, lambda: shot("02_installing"))
    QTimer.singleShot(1000, wait_install)


def wait_install() -> None:
    prompt = plugins["rsir_qgis_plugin"].dependencies
    task = prompt.task
    from rsir_qgis_plugin.tasks import is_active

    if is_active(task):
        QTimer.singleShot(1000, wait_install)
        return
    QTimer.singleShot(2000, report)  # finished() runs on the UI thread after the status change


def report() -> None:
    from rsir_qgis_plugin.dependencies import missing_requirements

    say(f"missing after install: {[r.module for r in missing_requirements()]}")
    shot("03_installed")
    QTimer.singleShot(500, quit_qgis)


def quit_qgis() -> None:
    say("quitting")
    LOG.flush()
    iface.actionExit().trigger()


QTimer.singleShot(3000, press_install)
