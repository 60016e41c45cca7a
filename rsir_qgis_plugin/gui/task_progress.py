"""A running task's item in the message bar: its text, a progress bar, its latest message and Cancel.

The user may close the item at any time: every update first checks that its widgets still exist, and the
task goes on (and stays in the task bar, whose own cancel button works too)."""
from __future__ import annotations

from qgis.core import Qgis
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject
from qgis.PyQt.QtWidgets import QLabel, QProgressBar, QPushButton, QSizePolicy

from ..tasks import is_active

MESSAGE_TITLE = "rsir"
STATUS_CHARS = 80


class TaskProgress(QObject):
    """Follows `task` (a QgsTask with a `progressMessage(str)` signal) until close()."""

    def __init__(self, bar, task, text: str):
        super().__init__()
        self.bar = bar
        self.task = task
        item = bar.createMessage(MESSAGE_TITLE, text)
        self.progress = QProgressBar(item)
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(220)
        self.status = QLabel("", item)
        # Ignored: a long raster name must not widen the message bar (and take the width of the side panels).
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.cancel_button = QPushButton("Cancel", item)
        self.cancel_button.clicked.connect(self.cancel)
        for widget in (self.progress, self.status, self.cancel_button):
            item.layout().addWidget(widget)
        self.item = bar.pushWidget(item, Qgis.MessageLevel.Info)
        task.progressChanged.connect(self._on_progress)
        task.progressMessage.connect(self._on_message)

    def shown(self) -> bool:
        return self.item is not None and not sip.isdeleted(self.item) and not sip.isdeleted(self.progress)

    def cancel(self) -> None:
        if is_active(self.task):
            self.task.cancel()

    def close(self) -> None:
        if self.shown():
            self.bar.popWidget(self.item)
        self.item = None

    def _on_progress(self, value: float) -> None:
        if self.shown():
            self.progress.setValue(int(value))

    def _on_message(self, text: str) -> None:
        if self.shown():
            self.status.setText(text[:STATUS_CHARS])
            self.status.setToolTip(text)
