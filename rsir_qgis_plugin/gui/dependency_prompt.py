"""The message-bar entry that names missing packages and installs them when the user asks.

The message bar shows one or two lines of text beside its buttons: the entry names the packages
and nothing more, and Details (and the rsir log) holds what each is for and how to get it.
"""
from __future__ import annotations

import importlib

from qgis.core import Qgis, QgsApplication
from qgis.PyQt import sip
from qgis.PyQt.QtWidgets import QPushButton

from ..dependencies import add_private_site, describe_missing, missing_requirements, pip_installable, private_site
from ..tasks import InstallPackagesTask, is_active, log
from .text_viewer import DetailsWindow

MESSAGE_TITLE = "rsir"
DETAILS_TIP = "The whole message (also in the rsir tab of the log panel)"
LINE_CHARS = 100  # longer first lines are cut; Details has the whole text


def short_line(missing) -> str:
    """'Missing Python packages: onnxruntime, faiss-cpu.' (after the title 'rsir'). The Install button
    names those pip may install; Details says what each is for and how to get the others (rasterio)."""
    return f"Missing Python packages: {', '.join(r.pip_name or r.module for r in missing)}."


def details_text(missing) -> str:
    return (describe_missing(missing) + "\n\nInstall puts pip packages into " + str(private_site())
            + " (QGIS's own packages keep priority). Nothing is installed without that click.")


def first_line(text: str) -> str:
    first = (text.strip().splitlines() or [""])[0]
    return first if len(first) <= LINE_CHARS else first[:LINE_CHARS - 3].rstrip() + "..."


class DependencyPrompt:
    """`ready()` is the gate every engine action passes: True, or a message saying what is missing."""

    def __init__(self, iface):
        self.iface = iface
        self.task: InstallPackagesTask | None = None
        self._item = None
        self.details = DetailsWindow("rsir: Python packages", iface.mainWindow())

    def ready(self) -> bool:
        missing = missing_requirements()
        if missing:
            self.show(missing)
        return not missing

    def show(self, missing=None) -> None:
        missing = missing if missing is not None else missing_requirements()
        if not missing or self._item_visible():
            return
        bar = self.iface.messageBar()
        item = bar.createMessage(MESSAGE_TITLE, short_line(missing))
        installable = pip_installable(missing)
        if installable:
            button = QPushButton(f"Install {', '.join(installable)}", item)
            button.setObjectName("rsirInstallButton")
            button.clicked.connect(lambda: self.install(installable))
            item.layout().addWidget(button)
        self.details.add_button(item, details_text(missing), DETAILS_TIP)
        log(details_text(missing), Qgis.MessageLevel.Warning)
        self._item = bar.pushWidget(item, Qgis.MessageLevel.Warning)

    def install(self, packages: list[str]) -> InstallPackagesTask | None:
        if is_active(self.task):
            return None
        self._close_item()
        task = InstallPackagesTask(packages, private_site())
        task.succeeded.connect(self._on_installed)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(lambda: self._report("Installation cancelled.", Qgis.MessageLevel.Info))
        self.task = task
        self.iface.messageBar().pushMessage(MESSAGE_TITLE, f"Installing {', '.join(packages)} with pip "
                                            "(progress in the task bar, output in the rsir log)...",
                                            Qgis.MessageLevel.Info, 10)
        QgsApplication.taskManager().addTask(task)
        return task

    def _on_installed(self, text: str) -> None:
        add_private_site()
        importlib.invalidate_caches()
        log(text, Qgis.MessageLevel.Success)
        still = missing_requirements()
        if still:
            self.show(still)
        else:
            self._report("Python packages installed: rsir is ready.", Qgis.MessageLevel.Success)

    def _on_failed(self, error: str) -> None:
        details = (getattr(self.task, "error_details", None) if self.task and not sip.isdeleted(self.task)
                   else None) or error
        self._report(f"Installing failed: {first_line(error)}", Qgis.MessageLevel.Critical, details)

    def _report(self, text: str, level: Qgis.MessageLevel, details: str | None = None) -> None:
        duration = 0 if level == Qgis.MessageLevel.Critical else 10
        bar = self.iface.messageBar()
        item = bar.createMessage(MESSAGE_TITLE, text)
        if details and details.strip() != text.strip():
            self.details.add_button(item, details, DETAILS_TIP)
        bar.pushWidget(item, level, duration)
        log(details or text, level)

    def _item_visible(self) -> bool:
        item = self._item
        return item is not None and not sip.isdeleted(item) and item in self.iface.messageBar().items()

    def _close_item(self) -> None:
        if self._item is not None and not sip.isdeleted(self._item):
            self.iface.messageBar().popWidget(self._item)
        self._item = None

    def close(self) -> None:
        self._close_item()
        self.details.close()
        if is_active(self.task):
            self.task.cancel()
