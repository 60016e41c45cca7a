"""The message-bar entry that names missing packages and installs them when the user asks."""
from __future__ import annotations

import importlib

from qgis.core import Qgis, QgsApplication
from qgis.PyQt import sip
from qgis.PyQt.QtWidgets import QPushButton

from ..dependencies import add_private_site, describe_missing, missing_requirements, pip_installable, private_site
from ..tasks import InstallPackagesTask, is_active, log

MESSAGE_TITLE = "rsir"


class DependencyPrompt:
    """`ready()` is the gate every engine action passes: True, or a message saying what is missing."""

    def __init__(self, iface):
        self.iface = iface
        self.task: InstallPackagesTask | None = None
        self._item = None

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
        item = bar.createMessage(MESSAGE_TITLE, describe_missing(missing))
        installable = pip_installable(missing)
        if installable:
            button = QPushButton(f"Install {', '.join(installable)}", item)
            button.setObjectName("rsirInstallButton")
            button.clicked.connect(lambda: self.install(installable))
            item.layout().addWidget(button)
        log(describe_missing(missing), Qgis.MessageLevel.Warning)
        self._item = bar.pushWidget(item, Qgis.MessageLevel.Warning)

    def install(self, packages: list[str]) -> InstallPackagesTask | None:
        if is_active(self.task):
            return None
        self._close_item()
        task = InstallPackagesTask(packages, private_site())
        task.succeeded.connect(self._on_installed)
        task.failed.connect(
            lambda error: self._report(f"Installing failed: {error}", Qgis.MessageLevel.Critical))
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

    def _report(self, text: str, level: Qgis.MessageLevel) -> None:
        duration = 0 if level == Qgis.MessageLevel.Critical else 10
        self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level, duration)
        log(text, level)

    def _item_visible(self) -> bool:
        return self._item is not None and not sip.isdeleted(self._item) and self._item in self.iface.messageBar().items()

    def _close_item(self) -> None:
        if self._item is not None and not sip.isdeleted(self._item):
            self.iface.messageBar().popWidget(self._item)
        self._item = None

    def close(self) -> None:
        self._close_item()
        if is_active(self.task):
            self.task.cancel()
