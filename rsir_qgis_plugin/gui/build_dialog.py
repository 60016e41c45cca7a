"""The "Build index" dialog: rasters, model, tiling, device and index folder -> BuildParams.

Reading the model's metadata (it opens an onnxruntime session and hashes the file) and
listing inference devices run as tasks, so opening the dialog never freezes QGIS.
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsProject
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ..core.params import BuildParams
from ..settings import BuildSettings, load_build_settings, parse_bands, project_index_dir, save_build_settings
from ..tasks import InfoTask, is_active
from .layers import project_rasters, raster_file_path

PATH_ROLE = Qt.UserRole + 1
DEVICES = (("auto", "Auto (CUDA when it works, else CPU)"), ("cpu", "CPU"), ("cuda", "CUDA"))
UNITS = (("px", "pixels"), ("m", "metres"))


class BuildIndexDialog(QDialog):
    """Collects a BuildParams; `build_params()` is valid after the dialog was accepted."""

    def __init__(self, project: QgsProject | None = None, parent: QWidget | None = None,
                 engine_ready: bool = True):
        super().__init__(parent)
        self.setWindowTitle("rsir: build index")
        self.setObjectName("rsirBuildIndexDialog")
        self.project = project or QgsProject.instance()
        self._params: BuildParams | None = None
        self._tasks: list[InfoTask] = []
        saved = load_build_settings()

        layout = QVBoxLayout(self)
        layout.addWidget(self._rasters_box())
        layout.addWidget(self._model_box(saved))
        layout.addWidget(self._tiling_box(saved))
        layout.addWidget(self._output_box(saved))
        self.error_label = QLabel("", self)
        self.error_label.setStyleSheet("color: #b00020")
        self.error_label.setWordWrap(True)
        layout.addWidget(self.error_label)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        buttons.button(QDialogButtonBox.Ok).setText("Build")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)
        if engine_ready:
            self._describe_model()
            self._describe_devices()

    # Sections ----------------------------------------------------------------------------

    def _rasters_box(self) -> QGroupBox:
        box = QGroupBox("Rasters to index", self)
        self.raster_list = QListWidget(box)
        for layer in project_rasters(self.project):
            item = QListWidgetItem(f"{layer.name()}  ({layer.crs().authid() or 'custom CRS'}, "
                                   f"{layer.width()} x {layer.height()} px)")
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked)
            item.setData(PATH_ROLE, raster_file_path(layer))
            item.setToolTip(raster_file_path(layer))
            self.raster_list.addItem(item)
        if self.raster_list.count() == 0:
            self.raster_list.addItem(QListWidgetItem("The project has no file-based raster layers."))
        all_button, none_button = QPushButton("All", box), QPushButton("None", box)
        all_button.clicked.connect(lambda: self._check_all(Qt.Checked))
        none_button.clicked.connect(lambda: self._check_all(Qt.Unchecked))
        row = QHBoxLayout()
        row.addWidget(all_button)
        row.addWidget(none_button)
        row.addStretch(1)
        layout = QVBoxLayout(box)
        layout.addWidget(self.raster_list)
        layout.addLayout(row)
        return box

    def _model_box(self, saved: BuildSettings) -> QGroupBox:
        box = QGroupBox("Model", self)
        self.default_model_radio = QRadioButton("Bundled default model", box)
        self.file_model_radio = QRadioButton("ONNX file", box)
        group = QButtonGroup(box)
        group.addButton(self.default_model_radio)
        group.addButton(self.file_model_radio)
        self.model_widget = QgsFileWidget(box)
        self.model_widget.setFilter("ONNX models (*.onnx)")
        self.model_widget.setFilePath(saved.model_path)
        (self.file_model_radio if saved.model_path else self.default_model_radio).setChecked(True)
        self.model_widget.setEnabled(bool(saved.model_path))
        self.file_model_radio.toggled.connect(self.model_widget.setEnabled)
        self.file_model_radio.toggled.connect(self._describe_model)
        self.model_widget.fileChanged.connect(self._describe_model)
        self.model_label = QLabel("", box)
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout = QVBoxLayout(box)
        layout.addWidget(self.default_model_radio)
        row = QHBoxLayout()
        row.addWidget(self.file_model_radio)
        row.addWidget(self.model_widget, 1)
        layout.addLayout(row)
        layout.addWidget(self.model_label)
        return box

    def _tiling_box(self, saved: BuildSettings) -> QGroupBox:
        box = QGroupBox("Tiles", self)
        self.unit_combo = QComboBox(box)
        for key, label in UNITS:
            self.unit_combo.addItem(label, key)
        self.unit_combo.setCurrentIndex(max(0, self.unit_combo.findData(saved.unit)))
        self.tile_spin = _size_spin(box, "model input size", saved.tile_size)
        self.stride_spin = _size_spin(box, "half a tile", saved.stride)
        self.bands_edit = QLineEdit(saved.bands, box)
        self.bands_edit.setPlaceholderText("auto: RGB by colour interpretation (e.g. 4,3,2)")
        self.device_combo = QComboBox(box)
        for key, label in DEVICES:
            self.device_combo.addItem(label, key)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(saved.device)))
        self.device_label = QLabel("", box)
        self.device_label.setWordWrap(True)
        self.tta_check = QCheckBox("Rotation TTA: embed each tile as the mean of 4 rotations "
                                   "(4x slower; matches across orientations)", box)
        self.tta_check.setChecked(saved.tta)
        form = QFormLayout(box)
        form.addRow("Units", self.unit_combo)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Stride", self.stride_spin)
        form.addRow("Bands", self.bands_edit)
        form.addRow("Device", self.device_combo)
        form.addRow("", self.device_label)
        form.addRow(self.tta_check)
        return box

    def _output_box(self, saved: BuildSettings) -> QGroupBox:
        box = QGroupBox("Index folder", self)
        self.index_widget = QgsFileWidget(box)
        self.index_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.index_widget.setFilePath(str(project_index_dir(self.project)))
        note = QLabel("Re-building an existing index only embeds new or changed rasters.", box)
        note.setWordWrap(True)
        layout = QVBoxLayout(box)
        layout.addWidget(self.index_widget)
        layout.addWidget(note)
        return box

    # Values ------------------------------------------------------------------------------

    def selected_rasters(self) -> list[str]:
        items = (self.raster_list.item(i) for i in range(self.raster_list.count()))
        return [item.data(PATH_ROLE) for item in items
                if item.data(PATH_ROLE) and item.checkState() == Qt.Checked]

    def settings(self) -> BuildSettings:
        return BuildSettings(
            tile_size=self.tile_spin.value(), stride=self.stride_spin.value(),
            unit=self.unit_combo.currentData(), bands=self.bands_edit.text().strip(),
            device=self.device_combo.currentData(), tta=self.tta_check.isChecked(),
            model_path=self.model_widget.filePath() if self.file_model_radio.isChecked() else "")

    def build_params(self) -> BuildParams | None:
        return self._params

    def accept(self) -> None:
        """Validate before closing: a wrong value is explained here, not by a failed task later."""
        try:
            self._params = self._collect()
        except ValueError as exc:
            self.error_label.setText(str(exc))
            return
        save_build_settings(self.settings())
        super().accept()

    def _collect(self) -> BuildParams:
        rasters = self.selected_rasters()
        if not rasters:
            raise ValueError("Tick at least one raster.")
        values = self.settings()
        if self.file_model_radio.isChecked() and not Path(values.model_path).is_file():
            raise ValueError(f"Model file not found: '{values.model_path}'.")
        parse_bands(values.bands)
        index_dir = self.index_widget.filePath().strip()
        if not index_dir:
            raise ValueError("Choose a folder for the index.")
        return values.to_params(index_dir, rasters)

    def done(self, result: int) -> None:
        for task in self._tasks:  # a description nobody will read
            if is_active(task):
                task.cancel()
        super().done(result)

    # Background look-ups -----------------------------------------------------------------

    def _describe_model(self, *_args) -> None:
        from ..core.model import read_model  # light: onnxruntime is imported inside read_model, in the task

        path = self.model_widget.filePath() if self.file_model_radio.isChecked() else None
        if self.file_model_radio.isChecked() and not (path and Path(path).is_file()):
            self.model_label.setText("Choose an .onnx embedding model.")
            return
        self.model_label.setText("Reading model...")
        task = InfoTask("rsir: reading model", read_model, path)
        task.succeeded.connect(lambda info, asked=path: self._show_model(asked, info.describe(), info.card()))
        task.failed.connect(lambda error, asked=path: self._show_model(asked, f"Not usable: {error}", error))
        self._start(task)

    def _show_model(self, asked: str | None, text: str, details: str) -> None:
        current = self.model_widget.filePath() if self.file_model_radio.isChecked() else None
        if current == asked:  # an answer for a model the user has since replaced is dropped
            self.model_label.setText(text)
            self.model_label.setToolTip(details)
            self._fit()

    def _describe_devices(self) -> None:
        self.device_label.setText("Looking for inference devices...")
        task = InfoTask("rsir: listing devices", _available_devices)
        task.succeeded.connect(lambda report: self._show_devices(report.describe()))
        task.failed.connect(lambda error: self._show_devices(f"onnxruntime unusable: {error}"))
        self._start(task)

    def _show_devices(self, text: str) -> None:
        self.device_label.setText(text)
        self._fit()

    def _fit(self) -> None:
        """Grow to fit text that arrived after the dialog was laid out (wrapped labels would be cut)."""
        self.layout().activate()
        wanted = self.sizeHint().height()
        if wanted > self.height():
            self.resize(self.width(), wanted)

    def _start(self, task: InfoTask) -> None:
        self._tasks = [t for t in self._tasks if is_active(t)] + [task]
        QgsApplication.taskManager().addTask(task)

    def _check_all(self, state: Qt.CheckState) -> None:
        for i in range(self.raster_list.count()):
            item = self.raster_list.item(i)
            if item.data(PATH_ROLE):
                item.setCheckState(state)


def _size_spin(parent: QWidget, automatic: str, value: float) -> QDoubleSpinBox:
    """0 shows as `automatic` and means "the engine decides"."""
    spin = QDoubleSpinBox(parent)
    spin.setRange(0.0, 100000.0)
    spin.setDecimals(1)
    spin.setSingleStep(16.0)
    spin.setSpecialValueText(automatic)
    spin.setValue(value)
    return spin


def _available_devices():
    """In the worker thread, imports included (the embedder module imports numpy and onnxruntime)."""
    from ..core.embedder import available_devices

    return available_devices()
