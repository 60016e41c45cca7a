"""The "Build index" dialog: rasters, model (gui/model_box.py), tiling, device and index folder -> BuildParams.

Reading the model's metadata (it opens an onnxruntime session and hashes the file) and
listing inference devices run as tasks, so opening the dialog never freezes QGIS. The form
scrolls, the raster list takes the height the dialog has, the index folder stays below the form
(never scrolled away), and the dialog opens no taller than the screen (768 px laptops included), at
the size the user left it last time.
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QGuiApplication
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.params import BuildParams, parse_bands
from ..core.runtime import CUDA
from ..layers import project_rasters, raster_file_path
from ..model_choice import describe_devices
from ..settings import (
    BuildSettings,
    band_problem,
    load_build_settings,
    project_index_dir,
    save_build_settings,
)
from ..tasks import InfoTask, is_active
from .model_box import ModelBox

PATH_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole + 2
BAND_COUNT_ROLE = Qt.ItemDataRole.UserRole + 3
DEVICES = (("auto", "Auto (CUDA when it works, else CPU)"), ("cpu", "CPU"), ("cuda", "CUDA"))
UNITS = (("px", "pixels"), ("m", "metres"))
LIST_ROWS = 3  # rasters visible at least; the list takes whatever height the dialog has beyond that
SCREEN_MARGIN = 80  # title bar, task bar
GEOMETRY_KEY = "rsir/build_dialog_geometry"


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
        self._band_error = ""  # the live band check's text in error_label
        saved = load_build_settings()

        self.form = QWidget()
        form_layout = QVBoxLayout(self.form)
        form_layout.setContentsMargins(0, 0, 0, 0)
        form_layout.addWidget(self._rasters_box(), 1)
        self.model_box = ModelBox(saved.model_path, self._start, self.form)
        self.model_box.changed.connect(self._model_described)
        form_layout.addWidget(self.model_box)
        form_layout.addWidget(self._tiling_box(saved))
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.form)

        layout = QVBoxLayout(self)
        layout.addWidget(self.scroll, 1)
        layout.addLayout(self._output_rows())
        self.error_label = QLabel("", self)
        self.error_label.setStyleSheet("color: #b00020")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        layout.addWidget(self.error_label)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Build")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        bottom = QHBoxLayout()  # the note beside the buttons costs no height
        note = QLabel("Rebuilding an index only embeds new or changed rasters.", self)
        note.setWordWrap(True)
        note.setStyleSheet("color: palette(mid)")
        bottom.addWidget(note, 1)
        bottom.addWidget(buttons)
        layout.addLayout(bottom)
        self.setMinimumWidth(560)
        self.bands_edit.textChanged.connect(self._check_bands_live)
        self.raster_list.itemChanged.connect(self._check_bands_live)
        self._check_bands_live()
        self._fit()
        # The size the user left it at last time; then text arriving later no longer resizes it.
        self._sized_by_user = bool(self.restoreGeometry(QgsSettings().value(GEOMETRY_KEY, b"")))
        if engine_ready:
            self.model_box.watch()
            self._describe_devices()

    # Sections ----------------------------------------------------------------------------

    def _rasters_box(self) -> QGroupBox:
        box = QGroupBox("Rasters to index", self)
        self.raster_list = QListWidget(box)
        for layer in project_rasters(self.project):
            count = layer.bandCount()
            crs = layer.crs().authid() or "custom CRS"
            item = QListWidgetItem(f"{layer.name()}  ({crs}, {layer.width()} x {layer.height()} px, "
                                   f"{count} band{'s' if count != 1 else ''})")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setData(PATH_ROLE, raster_file_path(layer))
            item.setData(NAME_ROLE, layer.name())
            item.setData(BAND_COUNT_ROLE, count)
            item.setToolTip(f"{item.text()}\n{raster_file_path(layer)}")
            self.raster_list.addItem(item)
        if self.raster_list.count() == 0:
            self.raster_list.addItem(QListWidgetItem("The project has no file-based raster layers."))
        # Long names are elided in the middle (the tooltip has all), never scrolled sideways.
        self.raster_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.raster_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Its preferred height is its minimum: the form's stretch gives it the rest, and the form (whose
        # word-wrapped labels make the scroll area ask its height for the width) never scrolls for it.
        self.raster_list.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        rows = min(self.raster_list.count(), LIST_ROWS)
        self.raster_list.setMinimumHeight(rows * max(self.raster_list.sizeHintForRow(0), 16)
                                          + 2 * self.raster_list.frameWidth() + 4)
        all_button, none_button = QPushButton("All", box), QPushButton("None", box)
        all_button.clicked.connect(lambda: self._check_all(Qt.CheckState.Checked))
        none_button.clicked.connect(lambda: self._check_all(Qt.CheckState.Unchecked))
        column = QVBoxLayout()
        column.addWidget(all_button)
        column.addWidget(none_button)
        column.addStretch(1)
        layout = QHBoxLayout(box)
        layout.addWidget(self.raster_list, 1)
        layout.addLayout(column)
        return box

    def _tiling_box(self, saved: BuildSettings) -> QGroupBox:
        box = QGroupBox("Tiles", self)
        self.unit_combo = QComboBox(box)
        for key, label in UNITS:
            self.unit_combo.addItem(label, key)
        self.unit_combo.setCurrentIndex(max(0, self.unit_combo.findData(saved.unit)))
        self.tile_spin = _size_spin(box, "model input size", saved.tile_size)
        self.stride_spin = _size_spin(box, "half a tile", saved.stride)
        sizes = QHBoxLayout()
        sizes.addWidget(self.tile_spin, 1)
        sizes.addWidget(QLabel("stride", box))
        sizes.addWidget(self.stride_spin, 1)
        sizes.addWidget(self.unit_combo)
        self.bands_edit = QLineEdit(saved.bands, box)
        self.bands_edit.setPlaceholderText("auto: RGB by colour interpretation (e.g. 4,3,2)")
        self.device_combo = QComboBox(box)
        for key, label in DEVICES:
            self.device_combo.addItem(label, key)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(saved.device)))
        self.device_label = QLabel("", box)
        self.device_label.setWordWrap(True)
        self.tta_check = QCheckBox("Rotation TTA (4x slower; matches across orientations)", box)
        self.tta_check.setToolTip("Embed each tile as the mean of its 4 rotations by 90 degrees")
        self.tta_check.setChecked(saved.tta)
        form = QFormLayout(box)
        form.addRow("Tile size", sizes)
        form.addRow("Bands", self.bands_edit)
        form.addRow("Device", self.device_combo)
        form.addRow("", self.device_label)
        form.addRow(self.tta_check)
        return box

    def _output_rows(self) -> QFormLayout:
        self.index_widget = QgsFileWidget(self)
        self.index_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.index_widget.setFilePath(str(project_index_dir(self.project)))
        form = QFormLayout()
        form.setContentsMargins(6, 0, 6, 0)
        form.addRow("Index folder", self.index_widget)
        return form

    # Values ------------------------------------------------------------------------------

    def _checked_items(self) -> list[QListWidgetItem]:
        items = (self.raster_list.item(i) for i in range(self.raster_list.count()))
        return [item for item in items if item.data(PATH_ROLE) and item.checkState() == Qt.CheckState.Checked]

    def selected_rasters(self) -> list[str]:
        return [item.data(PATH_ROLE) for item in self._checked_items()]

    def settings(self) -> BuildSettings:
        return BuildSettings(
            tile_size=self.tile_spin.value(), stride=self.stride_spin.value(),
            unit=self.unit_combo.currentData(), bands=self.bands_edit.text().strip(),
            device=self.device_combo.currentData(), tta=self.tta_check.isChecked(),
            model_path=self.model_box.current_model() or "")

    def build_params(self) -> BuildParams | None:
        return self._params

    def accept(self) -> None:
        """Validate before closing: a wrong value is explained here, not by a failed task later.
        Only values that passed are remembered for next time."""
        try:
            self._params = self._collect()
        except ValueError as exc:
            self._set_error(str(exc))
            return
        save_build_settings(self.settings())
        super().accept()

    def _collect(self) -> BuildParams:
        rasters = self.selected_rasters()
        if not rasters:
            raise ValueError("Tick at least one raster.")
        values = self.settings()
        if self.model_box.file_model_radio.isChecked() and not Path(values.model_path).is_file():
            raise ValueError(f"Model file not found: '{values.model_path}'.")
        if self.model_box.error:
            raise ValueError(f"This model cannot be used: {self.model_box.error}")
        problem = self._band_problem()  # raises ValueError for text that is not band numbers
        if problem:
            raise ValueError(problem)
        index_dir = self.index_widget.filePath().strip()
        if not index_dir:
            raise ValueError("Choose a folder for the index.")
        return values.to_params(index_dir, rasters)

    def _band_problem(self) -> str | None:
        rasters = [(item.data(NAME_ROLE), item.data(BAND_COUNT_ROLE)) for item in self._checked_items()]
        return band_problem(parse_bands(self.bands_edit.text()), rasters, self.model_box.bands)

    def _check_bands_live(self, *_args) -> None:
        """Say at once when the bands do not fit the ticked rasters or the model (and clear it when fixed)."""
        try:
            problem = self._band_problem() or ""
        except ValueError as exc:
            problem = str(exc)
        if problem or self.error_label.text() == self._band_error:
            self._set_error(problem)
        self._band_error = problem

    def _set_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    def done(self, result: int) -> None:
        for task in self._tasks:  # a description nobody will read
            if is_active(task):
                task.cancel()
        QgsSettings().setValue(GEOMETRY_KEY, self.saveGeometry())
        super().done(result)

    # Background look-ups -----------------------------------------------------------------

    def _model_described(self) -> None:
        self._check_bands_live()
        # After the layouts took the new text in (their requests are queued events): the model list's
        # longest line can widen the form.
        QTimer.singleShot(0, self._fit)

    def _describe_devices(self) -> None:
        self.device_label.setText("Looking for inference devices...")
        task = InfoTask("rsir: listing devices", _available_devices)
        task.succeeded.connect(self._show_devices)
        task.failed.connect(lambda error: self._show_device_text(f"onnxruntime unusable: {error}"))
        self._start(task)

    def _show_devices(self, report) -> None:
        if CUDA not in getattr(report, "providers", ()):
            index = self.device_combo.findData("cuda")
            self.device_combo.setItemText(index, "CUDA (not available here)")
        self._show_device_text(describe_devices(report))

    def _show_device_text(self, text: str) -> None:
        self.device_label.setText(text)
        self._fit()

    # Size ---------------------------------------------------------------------------------

    def natural_height(self) -> int:
        """The height that shows the whole form without scrolling."""
        self.form.layout().activate()
        self.layout().activate()
        around = self.layout().sizeHint().height() - self.scroll.sizeHint().height()
        return self.form.sizeHint().height() + 2 * self.scroll.frameWidth() + around

    def _fit(self) -> None:
        """Tall enough for the form (text arrives after the layout), never taller than the screen;
        a size the user chose (restored from last time) is kept, only widened for wider content."""
        screen = (self.parentWidget() or self).screen() if hasattr(self, "screen") else None
        screen = screen or QGuiApplication.primaryScreen()
        available = screen.availableGeometry().height() - SCREEN_MARGIN if screen else 700
        wanted = min(self.natural_height(), available)
        margins = self.layout().contentsMargins()
        width = max(self.width(), self.minimumWidth(), self.form.minimumSizeHint().width()
                    + self.scroll.verticalScrollBar().sizeHint().width() + margins.left() + margins.right())
        if getattr(self, "_sized_by_user", False):
            if width > self.width():
                self.resize(width, self.height())
        elif wanted > self.height() or self.height() > available or width > self.width():
            self.resize(width, wanted)

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
    """In the worker thread, imports included (listing the providers imports onnxruntime)."""
    from ..core.runtime import available_devices

    return available_devices()
