"""A window showing a long text (a build report, a model card) to read and copy, with optional
details (a model card's raw JSON) hidden behind a "Details" toggle."""
from __future__ import annotations

from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget


class TextViewer(QDialog):
    """A long text to read and copy; not modal. `details`, when given, shows only after Details is clicked."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None, details: str = ""):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.text_edit = _reader(text, self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text_edit, 2)
        self.details_edit: QPlainTextEdit | None = None
        self.details_button: QPushButton | None = None
        if details:
            self.details_edit = _reader(details, self)
            self.details_edit.hide()
            layout.addWidget(self.details_edit, 3)
            self.details_button = QPushButton("Details", self)
            self.details_button.setCheckable(True)
            self.details_button.setToolTip("The whole record as stored in the file (JSON)")
            self.details_button.toggled.connect(self.details_edit.setVisible)
            buttons.addButton(self.details_button, QDialogButtonBox.ButtonRole.ActionRole)
        layout.addWidget(buttons)
        self.resize(640, 420)


def _reader(text: str, parent: QWidget) -> QPlainTextEdit:
    edit = QPlainTextEdit(text, parent)
    edit.setReadOnly(True)
    edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
    return edit


class DetailsWindow:
    """The one window of details a message-bar source keeps: new details replace the window of the old."""

    def __init__(self, title: str, parent: QWidget):
        self.title = title
        self.parent = parent
        self.viewer: TextViewer | None = None

    def add_button(self, item: QWidget, text: str, tooltip: str) -> QPushButton:
        """A Details button at the end of a message-bar item, showing `text`."""
        button = QPushButton("Details", item)
        button.setObjectName("rsirDetailsButton")
        button.setToolTip(tooltip)
        button.clicked.connect(lambda: self.show(text))
        item.layout().addWidget(button)
        return button

    def show(self, text: str) -> TextViewer:
        self.close()
        self.viewer = TextViewer(self.title, text, self.parent)
        self.viewer.show()
        return self.viewer

    def close(self) -> None:
        if self.viewer is not None and not sip.isdeleted(self.viewer):
            self.viewer.close()
        self.viewer = None
