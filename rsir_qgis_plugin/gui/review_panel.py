"""The dock's "Review a sample" box: how far to trust a map. Pick a map layer (a file `rsir map` or Map
matches wrote), "Review a sample" draws a random sample of its polygons stratified by score in a task
(with their thumbnails), then shows them one at a time: the thumbnail, the canvas zoomed to the polygon,
and the keys Y (relevant) and N (not) mark it, Backspace steps back. When every polygon is marked it
shows the estimated precision with its 95 % interval, for the map and per score stratum, and writes in a
task the marked sample (MAP_review.gpkg beside the map) and the labels file (relevant = positive) for the
next Refine or map (core/review.py, core/review_io.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRectangle,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QSize, Qt, pyqtSignal
from qgis.PyQt.QtGui import QPixmap
from qgis.PyQt.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from ..tasks import EngineTask, InfoTask, is_active, start_task
from ..thumbnail_pixels import THUMBNAIL_PX
from .thumbnails import to_qimage

DEFAULT_SAMPLE = 30
ZOOM_MARGIN = 1.5  # the canvas shows the polygon with half its size again around it
THUMBNAIL_MARGIN = 0.25  # of the polygon's box on each side: the thumbnail shows its surroundings too
KEYS_HINT = "Y: relevant   N: not   Backspace: back"


@dataclass(frozen=True)
class ThumbnailWindow:
    """What thumbnail_pixels.read_thumbnails reads for a hit, for a sampled polygon's box."""

    rank: int  # the polygon's position in the review
    raster: str
    window: tuple[int, int, int, int]
    bands: tuple[int, ...]
    stretch: tuple[tuple[float, float], ...] | None


def draw_review(map_path: str, size: int):
    """Read the map, draw the sample and read its thumbnails (in a task): (review, {position: pixels})."""
    from ..core.map_io import read_map
    from ..core.review import draw_sample
    from ..core.review_io import sample_review
    from ..thumbnail_pixels import read_thumbnails

    match_map = read_map(map_path)
    polygons = match_map.polygons
    sample = draw_sample([p.score_max for p in polygons], [p.map_id for p in polygons], size)
    review = sample_review(match_map, sample)
    return review, read_thumbnails(_thumbnail_windows(review))


def _thumbnail_windows(review) -> list[ThumbnailWindow]:
    """Each sampled polygon's box, with a margin, as a pixel window of its raster; rasters that cannot be read
    give none (the polygon is still reviewed, without a picture)."""
    from rasterio.windows import from_bounds

    from ..core.errors import RsirError
    from ..core.geometry import reproject_ring
    from ..core.raster import describe, open_dataset

    windows, sources = [], {}
    for position, item in enumerate(review.items):
        try:
            if item.raster not in sources:
                sources[item.raster] = describe(item.raster, None, 3)
            source = sources[item.raster]
            xmin, ymin, xmax, ymax = item.bbox
            pad_x, pad_y = (xmax - xmin) * THUMBNAIL_MARGIN, (ymax - ymin) * THUMBNAIL_MARGIN
            ring = [(xmin - pad_x, ymin - pad_y), (xmax + pad_x, ymin - pad_y), (xmax + pad_x, ymax + pad_y),
                    (xmin - pad_x, ymax + pad_y)]
            xs, ys = zip(*reproject_ring(ring, review.crs_wkt, source.crs_wkt))
            with open_dataset(item.raster) as dataset:
                window = from_bounds(min(xs), min(ys), max(xs), max(ys), transform=dataset.transform)
            box = (round(window.col_off), round(window.row_off), max(1, round(window.width)),
                   max(1, round(window.height)))
            windows.append(ThumbnailWindow(position, item.raster, box, source.bands, source.stretch))
        except RsirError:
            sources.setdefault(item.raster, None)
            continue
    return windows


def write_results(review, sample_path: str, labels_path: str):
    """The marked sample and the labels file (in a task): (sample path, (labels path, positives, negatives))."""
    from ..core.review_io import write_review, write_review_labels

    return write_review(review, sample_path), write_review_labels(review, labels_path)


class ReviewPanel(QGroupBox):
    """Draws a sample of a map layer's polygons, takes Y/N for each, shows the estimate and writes the labels."""

    sampleReady = pyqtSignal(object)  # the Review drawn
    reviewFinished = pyqtSignal(object)  # the PrecisionEstimate, once the files are written

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Review a sample", parent)
        self.review = None  # core.review_io.Review being marked
        self.position = 0
        self.estimate = None
        self._pixmaps: dict[int, QPixmap] = {}
        self._task: EngineTask | None = None
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.layer_combo.setToolTip("A map written by Map matches or `rsir map` (layer rsir_map)")
        self.layer_combo.setMinimumContentsLength(8)  # long layer names elide rather than widen the dock
        self.layer_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sample_spin = QSpinBox(self)
        self.sample_spin.setRange(1, 1000)
        self.sample_spin.setValue(DEFAULT_SAMPLE)
        self.sample_spin.setToolTip("Polygons to review, drawn at random in equal-count score strata")
        self.review_button = QPushButton("Review a sample", self)
        self.labels_widget = QgsFileWidget(self)
        self.labels_widget.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.labels_widget.setFilter("GeoPackage (*.gpkg)")
        self.labels_widget.setToolTip("Where the marked polygons go as labels (relevant = positive); "
                                      "the marked sample goes beside the map as MAP_review.gpkg")
        self.thumb_label = QLabel(self)
        self.thumb_label.setFixedSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.thumb_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb_label.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # takes the keys while reviewing
        self.item_label = QLabel(self)
        self.item_label.setWordWrap(True)
        self.yes_button, self.no_button = QPushButton("Yes (Y)", self), QPushButton("No (N)", self)
        self.status_label = QLabel("Pick a map layer, then draw a sample to mark.", self)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._build_layout()
        self.layer_combo.layerChanged.connect(self._on_layer)
        self.review_button.clicked.connect(self.start)
        self.yes_button.clicked.connect(lambda: self.mark(True))
        self.no_button.clicked.connect(lambda: self.mark(False))
        self._on_layer(self.layer_combo.currentLayer())
        self._show_item()

    def _build_layout(self) -> None:
        choose = QHBoxLayout()
        choose.addWidget(self.layer_combo, 1)
        choose.addWidget(self.sample_spin)
        item = QVBoxLayout()
        item.addWidget(self.item_label)
        item.addWidget(self.yes_button)  # one above the other: the dock is narrow
        item.addWidget(self.no_button)
        item.addStretch(1)
        shown = QHBoxLayout()
        shown.addWidget(self.thumb_label)
        shown.addLayout(item, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(choose)
        layout.addWidget(self.labels_widget)
        layout.addWidget(self.review_button)
        layout.addLayout(shown)
        layout.addWidget(self.status_label)

    # Drawing the sample -------------------------------------------------------------------

    def map_path(self) -> str | None:
        """The chosen layer's file, when it is an OGR file layer."""
        layer = self.layer_combo.currentLayer()
        if layer is None or layer.providerType() != "ogr":
            return None
        path = layer.source().split("|")[0]
        return path if Path(path).is_file() else None

    def start(self) -> None:
        """Draw a sample of the chosen map layer (a task), then review it."""
        path = self.map_path()
        if is_active(self._task):
            return
        if path is None:
            self.status_label.setText("Pick a map layer stored in a file (written by Map matches or `rsir map`).")
            return
        if not self.labels_widget.filePath():
            self._on_layer(self.layer_combo.currentLayer())
        task = InfoTask(f"rsir: drawing a sample of {Path(path).name}", draw_review, path, self.sample_spin.value())
        task.succeeded.connect(self._on_drawn)
        task.failed.connect(self.status_label.setText)
        self._start(task, f"Drawing {self.sample_spin.value()} polygons of {Path(path).name}...")

    def _on_drawn(self, drawn) -> None:
        self._task = None  # done: the keys mark from now on
        self.review, thumbnails = drawn
        self._pixmaps = {position: QPixmap.fromImage(to_qimage(rgb)) for position, rgb in thumbnails.items()}
        self.position, self.estimate = 0, None
        strata = ", ".join(f"{s.number}: {s.low:.2f}-{s.high:.2f}" for s in self.review.strata)
        self.status_label.setText(f"{len(self.review.items)} polygons to mark, in score strata {strata}.")
        self._show_item()
        self.thumb_label.setFocus()
        self.sampleReady.emit(self.review)

    # Marking ------------------------------------------------------------------------------

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's override
        """Y and N mark the shown polygon, Backspace steps back; other keys go on to Qt."""
        actions = {Qt.Key.Key_Y: lambda: self.mark(True), Qt.Key.Key_N: lambda: self.mark(False),
                   Qt.Key.Key_Backspace: self.back}
        action = actions.get(event.key()) if self._reviewing() else None
        if action is None:
            super().keyPressEvent(event)
            return
        action()
        event.accept()

    def mark(self, relevant: bool) -> None:
        """Mark the shown polygon and show the next; after the last, the estimate and the files."""
        if not self._reviewing():
            return
        self.review = self.review.with_mark(self.position, relevant)
        self.position += 1
        if self.position < len(self.review.items):
            self.status_label.setText(self._tally())
            self._show_item()
        else:
            self._finish()

    def _tally(self) -> str:
        """The marks so far (a count, not an estimate: the strata are weighed once all are marked)."""
        marks = [item.relevant for item in self.review.items if item.relevant is not None]
        return (f"{len(marks)} of {len(self.review.items)} marked: {sum(marks)} yes, {len(marks) - sum(marks)} no; "
                f"the estimate comes when all are marked.")

    def back(self) -> None:
        """Show the previous polygon again, to change its mark."""
        if self.review is not None and self.position > 0 and not is_active(self._task):
            self.position -= 1
            self._show_item()

    def _reviewing(self) -> bool:
        return self.review is not None and self.position < len(self.review.items) and not is_active(self._task)

    def _show_item(self) -> None:
        reviewing = self._reviewing()
        self.yes_button.setEnabled(reviewing)
        self.no_button.setEnabled(reviewing)
        if not reviewing:
            self.thumb_label.clear()
            self.item_label.setText(KEYS_HINT if self.review is None else "")
            return
        item = self.review.items[self.position]
        pixmap = self._pixmaps.get(self.position)
        if pixmap is None:
            self.thumb_label.setText("no picture")
        else:
            self.thumb_label.setPixmap(pixmap)
        mark = {None: "", True: " (marked yes)", False: " (marked no)"}[item.relevant]
        self.item_label.setText(f"Polygon {self.position + 1} of {len(self.review.items)}{mark}\n"
                                f"map id {item.map_id}, score {item.score:.3f}, stratum {item.stratum}\n{KEYS_HINT}")
        self._zoom_to(item)

    def _zoom_to(self, item) -> None:
        from qgis.utils import iface  # QGIS's interface; None outside QGIS

        if iface is None:
            return
        canvas = iface.mapCanvas()
        crs = QgsCoordinateReferenceSystem.fromWkt(self.review.crs_wkt) if self.review.crs_wkt else None
        box = QgsRectangle(*item.bbox)
        if crs is not None and crs.isValid():
            transform = QgsCoordinateTransform(crs, canvas.mapSettings().destinationCrs(), QgsProject.instance())
            box = transform.transformBoundingBox(box)
        box.scale(ZOOM_MARGIN)
        canvas.setExtent(box)
        canvas.refresh()

    # The estimate and the files -----------------------------------------------------------

    def _finish(self) -> None:
        from ..core.errors import RsirError

        self._show_item()
        try:
            self.estimate = self.review.estimate()
        except RsirError as exc:
            self.status_label.setText(str(exc))
            return
        self.status_label.setText("\n".join(self.estimate.describe()))
        map_path = Path(self.map_path() or self.labels_widget.filePath())
        sample_path = str(map_path.with_name(f"{map_path.stem}_review.gpkg"))
        task = InfoTask("rsir: writing the reviewed sample and its labels", write_results, self.review,
                        sample_path, self.labels_widget.filePath())
        task.succeeded.connect(self._on_written)
        task.failed.connect(lambda message: self.status_label.setText(f"{self.status_label.text()}\n{message}"))
        self._start(task, self.status_label.text())

    def _on_written(self, written) -> None:
        self._task = None
        sample, (labels, positives, negatives) = written
        self.status_label.setText(f"{self.status_label.text()}\nThe marked sample is in {sample}; {positives} positive "
                                  f"and {negatives} negative labels in {labels} (Load labels... to refine with them).")
        self.reviewFinished.emit(self.estimate)

    def _start(self, task: EngineTask, text: str) -> None:
        self._task = task
        self.status_label.setText(text)
        self.review_button.setEnabled(False)
        start_task(task, self._on_task_over)

    def _on_task_over(self) -> None:
        self.review_button.setEnabled(True)
        self._show_item()

    def _on_layer(self, layer) -> None:
        """A new map layer: its labels file goes beside it unless the user chose one."""
        path = self.map_path()
        if path is not None:
            self.labels_widget.setFilePath(str(Path(path).with_name(f"{Path(path).stem}_review_labels.gpkg")))
