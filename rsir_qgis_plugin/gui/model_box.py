"""The build dialog's "Model" section: a bundled model or an ONNX file, described once read.

Reading a model (an onnxruntime session and a hash of the file) and labelling the bundled models with
their figures run as tasks, handed to the dialog's `start` so that it can cancel them when it closes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ..model_choice import bundled_index, bundled_models, model_facts, read_bundled
from ..tasks import InfoTask
from .text_viewer import TextViewer


class ModelBox(QGroupBox):
    """Which model the build uses, and what is known of it: `bands`, `error`, `facts` (once read)."""

    changed = pyqtSignal()  # a description arrived: the bands may fit or not, the text grew

    def __init__(self, saved_model_path: str, start: Callable[[InfoTask], None], parent: QWidget | None = None):
        super().__init__("Model", parent)
        self._start = start
        self.bands: int | None = None
        self.error: str | None = None
        self.facts: list[tuple[str, str]] = []
        self._card = ""
        self.viewer: TextViewer | None = None

        self.default_model_radio = QRadioButton("Bundled", self)
        self.file_model_radio = QRadioButton("ONNX file", self)
        group = QButtonGroup(self)
        group.addButton(self.default_model_radio)
        group.addButton(self.file_model_radio)
        # The bundled models (float32 default, int8 ...): their names now, their figures once read.
        self.bundled_combo = QComboBox(self)
        # The list shows each model's figures in full; the closed box stays narrow enough for one row.
        self.bundled_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.bundled_combo.setMinimumContentsLength(16)
        self.bundled_combo.setToolTip("Models shipped with rsir: quality (mAP on the AID test split) "
                                      "against CPU speed")
        bundled = bundled_models()
        for path in bundled:
            self.bundled_combo.addItem(path.name, str(path))
        saved_bundled = bundled_index(bundled, saved_model_path)
        self.bundled_combo.setCurrentIndex(max(0, saved_bundled))
        from_file = bool(saved_model_path) and saved_bundled < 0
        self.model_widget = QgsFileWidget(self)
        self.model_widget.setFilter("ONNX models (*.onnx)")
        self.model_widget.setFilePath(saved_model_path if from_file else "")
        (self.file_model_radio if from_file else self.default_model_radio).setChecked(True)
        self.model_widget.setEnabled(from_file)
        self.bundled_combo.setEnabled(not from_file)
        self.file_model_radio.toggled.connect(self.model_widget.setEnabled)
        self.default_model_radio.toggled.connect(self.bundled_combo.setEnabled)
        self.model_label = QLabel("", self)
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.card_button = QPushButton("Model card...", self)
        self.card_button.setToolTip("Training data, loss, every metric and its protocol, licence")
        self.card_button.setEnabled(False)
        self.card_button.clicked.connect(self.show_card)
        self.facts_grid = QGridLayout()
        self.facts_grid.setHorizontalSpacing(12)
        self.facts_grid.setVerticalSpacing(2)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.default_model_radio)
        row.addWidget(self.bundled_combo, 1)
        row.addWidget(self.file_model_radio)
        row.addWidget(self.model_widget, 1)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.model_label, 1)
        row.addWidget(self.card_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)
        layout.addLayout(self.facts_grid)

    def watch(self) -> None:
        """Describe the chosen model now and whenever the choice changes (needs the engine)."""
        self.file_model_radio.toggled.connect(self.describe)
        self.model_widget.fileChanged.connect(self.describe)
        self.bundled_combo.currentIndexChanged.connect(self.describe)
        self.describe()
        self._describe_bundled()

    def current_model(self) -> str | None:
        """The model file chosen; None for the bundled default (what BuildParams takes as the default)."""
        if self.file_model_radio.isChecked():
            return self.model_widget.filePath()
        if self.bundled_combo.currentIndex() <= 0:
            return None
        return self.bundled_combo.currentData()

    def describe(self, *_args) -> None:
        from ..core.model import read_model  # light: onnxruntime is imported inside read_model, in the task

        self.bands, self.error, self._card = None, None, ""
        self._show_facts([])
        path = self.current_model()
        if self.file_model_radio.isChecked() and not (path and Path(path).is_file()):
            self.model_label.setText("Choose an .onnx embedding model.")
            return
        self.model_label.setText("Reading model...")
        task = InfoTask("rsir: reading model", read_model, path)
        task.succeeded.connect(lambda info, asked=path: self._show_model(asked, info))
        task.failed.connect(lambda error, asked=path: self._show_error(asked, error))
        self._start(task)

    def show_card(self) -> TextViewer:
        if self.viewer is not None and self.viewer.isVisible():
            self.viewer.close()
        self.viewer = TextViewer(f"rsir: model card of {self.model_label.text()}", self._card, self.window())
        self.viewer.show()
        return self.viewer

    def _describe_bundled(self) -> None:
        """Label each bundled model with its figures (reading them opens onnxruntime: in a task)."""
        paths = [Path(self.bundled_combo.itemData(i)) for i in range(self.bundled_combo.count())]
        if not paths:
            return
        task = InfoTask("rsir: reading bundled models", read_bundled, paths)
        task.succeeded.connect(self._show_bundled)
        self._start(task)

    def _show_bundled(self, labels: list) -> None:
        for path, label in labels:
            index = self.bundled_combo.findData(str(path))
            if index >= 0:
                self.bundled_combo.setItemText(index, label)
                self.bundled_combo.setItemData(index, label, Qt.ItemDataRole.ToolTipRole)
        self.changed.emit()

    def _show_model(self, asked: str | None, info) -> None:
        if self.current_model() != asked:  # an answer for a model the user has since replaced is dropped
            return
        self.bands = info.contract.bands
        self._card = info.card()
        self.model_label.setText(info.contract.name)
        self.model_label.setToolTip(str(info.path))
        self._show_facts(model_facts(info))
        self.changed.emit()

    def _show_error(self, asked: str | None, error: str) -> None:
        if self.current_model() != asked:
            return
        self.error = error
        self.model_label.setText(f"Not usable: {error}")
        self.model_label.setToolTip(error)
        self.changed.emit()

    def _show_facts(self, facts: list[tuple[str, str]]) -> None:
        """(label, value) rows as a two-pairs-per-line table under the model's name."""
        self.facts = facts
        while self.facts_grid.count():
            widget = self.facts_grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        for i, (label, value) in enumerate(facts):
            row, column = divmod(i, 2)
            name = QLabel(f"{label}:", self)
            shown = QLabel(value, self)
            shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.facts_grid.addWidget(name, row, 2 * column)
            self.facts_grid.addWidget(shown, row, 2 * column + 1)
        if facts:
            self.facts_grid.setColumnStretch(1, 1)
            self.facts_grid.setColumnStretch(3, 1)
        self.card_button.setEnabled(bool(self._card))
