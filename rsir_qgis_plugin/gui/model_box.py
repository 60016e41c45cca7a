"""The build dialog's "Model" section: a bundled model or an ONNX file, described once read.

Reading a model (an onnxruntime session and a hash of the file) and labelling the bundled models with
their figures run as tasks, handed to the dialog's `start` so that it can cancel them when it closes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QSize, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QRadioButton,
    QStyle,
    QStyleOptionComboBox,
    QVBoxLayout,
    QWidget,
)

from ..model_choice import bundled_index, bundled_models, model_facts, read_bundled, readable_card
from ..tasks import InfoTask
from .text_viewer import TextViewer

BUNDLED_TIP = "Models shipped with rsir: quality (mAP on the AID test split) against CPU speed"


class ModelBox(QGroupBox):
    """Which model the build uses, and what is known of it: `bands`, `error`, `facts` (once read)."""

    changed = pyqtSignal()  # a description arrived: the bands may fit or not, the text grew

    def __init__(self, saved_model_path: str, start: Callable[[InfoTask], None], parent: QWidget | None = None):
        super().__init__("Model", parent)
        self._start = start
        self.bands: int | None = None
        self.error: str | None = None
        self.facts: list[tuple[str, str]] = []
        self._card = ""  # readable model card; the raw JSON is in _card_json
        self._card_json = ""
        self.viewer: TextViewer | None = None

        self.default_model_radio = QRadioButton("Bundled", self)
        self.file_model_radio = QRadioButton("ONNX file", self)
        group = QButtonGroup(self)
        group.addButton(self.default_model_radio)
        group.addButton(self.file_model_radio)
        # The bundled models (float32 default, int8 ...): their names now, their figures once read.
        self.bundled_combo = QComboBox(self)
        # Wide enough for each model's short line (name, mAP, speed, size): nothing is cut.
        bundled = bundled_models()
        for path in bundled:
            self.bundled_combo.addItem(path.name, str(path))
        saved_bundled = bundled_index(bundled, saved_model_path)
        self.bundled_combo.setCurrentIndex(max(0, saved_bundled))
        # The closed box elides a long name: the tooltip has it whole.
        self.bundled_combo.currentIndexChanged.connect(self._show_combo_tip)
        self._show_combo_tip()
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
        self.card_button.setToolTip("What the model was trained on, its figures and what they mean, "
                                    "its licence; the whole record under Details")
        self.card_button.setEnabled(False)
        self.card_button.clicked.connect(self.show_card)
        self.facts_grid = QGridLayout()
        self.facts_grid.setHorizontalSpacing(12)
        self.facts_grid.setVerticalSpacing(2)
        layout = QVBoxLayout(self)
        choice = QGridLayout()  # one row each, so that the bundled models' names show in full
        choice.addWidget(self.default_model_radio, 0, 0)
        choice.addWidget(self.bundled_combo, 0, 1, 1, 2)
        choice.addWidget(self.file_model_radio, 1, 0)
        choice.addWidget(self.model_widget, 1, 1)
        choice.addWidget(self.card_button, 1, 2)  # beside the file box, which can give up the room
        choice.setColumnStretch(1, 1)
        layout.addLayout(choice)
        layout.addWidget(self.model_label)
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

        self.bands, self.error, self._card, self._card_json = None, None, "", ""
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
        self.viewer = TextViewer(f"rsir: model card of {self.model_label.text()}", self._card, self.window(),
                                 details=self._card_json)
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
        self._show_combo_tip()
        self.changed.emit()

    def _show_combo_tip(self, *_args) -> None:
        """The current model's whole line in the tooltip; the box no narrower than the longest line
        (QComboBox caches its minimum size from the first texts, the names before their figures)."""
        combo = self.bundled_combo
        combo.setToolTip(f"{combo.currentText()}\n\n{BUNDLED_TIP}")
        widest = max((combo.fontMetrics().horizontalAdvance(combo.itemText(i)) for i in range(combo.count())),
                     default=0)
        option = QStyleOptionComboBox()
        option.initFrom(combo)
        size = combo.style().sizeFromContents(QStyle.ContentsType.CT_ComboBox, option,
                                              QSize(widest, combo.fontMetrics().height()), combo)
        combo.setMinimumWidth(size.width())

    def _show_model(self, asked: str | None, info) -> None:
        if self.current_model() != asked:  # an answer for a model the user has since replaced is dropped
            return
        self.bands = info.contract.bands
        self._card, self._card_json = readable_card(info), info.card()
        self.model_label.setText(info.contract.name)
        self.model_label.setToolTip(f"{info.contract.name}\n{info.path}")
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
