"""What the algorithms share: a base class (icon, createInstance, the dependency gate) and engine errors
as Processing errors."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterFile,
    QgsProcessingParameterVectorLayer,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QIcon

from ..core.errors import Cancelled, RsirError
from ..dependencies import describe_missing, missing_requirements
from ..layers import raster_file_path

ICON = Path(__file__).resolve().parent.parent / "icon.png"
LABELS_TITLE = "Labelled examples (fields raster, label: positive/negative)"


def require_engine() -> None:
    missing = missing_requirements()
    if missing:
        raise QgsProcessingException(describe_missing(missing) + " Load the rsir plugin to install them.")


@contextmanager
def engine_errors() -> Iterator[None]:
    """Engine errors carry a message for the user; Processing shows QgsProcessingException's text."""
    try:
        yield
    except Cancelled as exc:
        raise QgsProcessingException(f"cancelled: {exc}") from exc
    except RsirError as exc:
        raise QgsProcessingException(str(exc)) from exc


def progress_reporter(feedback: QgsProcessingFeedback) -> Callable[[float, str], None]:
    """The engine's progress(percent, message) shown in a Processing feedback's bar and text."""
    def report(percent: float, message: str) -> None:
        feedback.setProgress(percent)
        feedback.setProgressText(message)

    return report


def index_folder_parameter(name: str) -> QgsProcessingParameterFile:
    """An existing index folder, as every algorithm that reads an index takes it."""
    return QgsProcessingParameterFile(name, "Index folder", QgsProcessingParameterFile.Behavior.Folder)


def labels_parameter(name: str, optional: bool = False) -> QgsProcessingParameterVectorLayer:
    """A polygon layer in the rsir labels layout (read by read_labels_layer)."""
    return QgsProcessingParameterVectorLayer(name, LABELS_TITLE, [QgsProcessing.SourceType.TypeVectorPolygon],
                                             optional=optional)


def read_labels_layer(labels: QgsVectorLayer, rasters: Sequence[QgsMapLayer], context: QgsProcessingContext,
                      feedback: QgsProcessingFeedback):
    """A labels layer's boxes on `rasters` as the plugin reads them (labels/convert: the rsir labels
    layout, core/label_records' checks): each feature left out is a warning, then one count line."""
    from ..labels.convert import feedback_from_features, footprints
    from ..labels.files import labels_dir

    read = feedback_from_features(labels.getFeatures(), labels.crs(), footprints(rasters),
                                  context.transformContext(), labels_dir(labels))
    for line in read.skipped:
        feedback.pushWarning(f"{labels.name()}: {line}")
    feedback.pushInfo(f"{read.positives} positive and {read.negatives} negative example(s) from {labels.name()}")
    return read


def labels_source(labels: QgsVectorLayer) -> str:
    """What a labels layer is recorded as: its file for a file layer, else its name."""
    return labels.source().split("|")[0] if labels.providerType() == "ogr" else labels.name()


def layer_file(layer: QgsMapLayer | None, parameter: str) -> str:
    path = raster_file_path(layer) if layer is not None else None
    if path is None:
        name = layer.name() if layer is not None else "(none)"
        raise QgsProcessingException(f"{parameter}: '{name}' is not a raster stored in a local file")
    return path


class RsirAlgorithm(QgsProcessingAlgorithm):
    """The base of rsir's algorithms (as QuickOSM's): the plugin's icon, createInstance, and the engine
    check before `process` runs.

    No group: the provider's algorithms are listed directly under it, as they always were.
    """

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def createInstance(self) -> RsirAlgorithm:  # noqa: N802
        return type(self)()  # every algorithm here is made without arguments

    def processAlgorithm(self, parameters, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        # Before `process` imports the engine: a missing package is one line naming it, not a traceback.
        require_engine()
        return self.process(parameters, context, feedback)

    def raster_extent(self, parameters, context: QgsProcessingContext, raster_name: str, extent_name: str,
                      what: str) -> tuple[QgsRasterLayer, str, QgsRectangle, QgsCoordinateReferenceSystem]:
        """The layer and file of raster parameter `raster_name` and the extent parameter `extent_name` on
        it, in the extent's CRS (the raster's when the extent names none); an empty extent is one line
        naming `what`."""
        raster = self.parameterAsRasterLayer(parameters, raster_name, context)
        path = layer_file(raster, raster_name)
        extent_crs = self.parameterAsExtentCrs(parameters, extent_name, context)
        if not extent_crs.isValid():
            extent_crs = raster.crs()
        extent = self.parameterAsExtent(parameters, extent_name, context, extent_crs)
        if extent.isEmpty():
            raise QgsProcessingException(f"{extent_name}: the {what} extent is empty")
        return raster, path, extent, extent_crs

    def required_labels(self, parameters, context: QgsProcessingContext, name: str) -> QgsVectorLayer:
        """The layer of a labels parameter that must be given; one line when it is not."""
        labels = self.parameterAsVectorLayer(parameters, name, context)
        if labels is None:
            raise QgsProcessingException(f"{name}: give a labels layer")
        return labels

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        """The algorithm's work, once the engine's packages are known to be there."""
        raise NotImplementedError
