"""rsir:build_index: index raster layers (incrementally) into a folder."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsProject,
)

from ..core.errors import BuildFailed
from ..core.params import DEVICES, BuildParams, TilingParams, parse_bands
from ..settings import band_problem, default_index_dir
from .common import RsirAlgorithm, engine_errors, layer_file, progress_reporter

TEMPORARY_INDEX = ("INDEX: an index in a temporary folder is deleted when QGIS exits; choose a folder for it "
                   "(for instance next to the project file)")


class BuildIndexAlgorithm(RsirAlgorithm):
    RASTERS, INDEX, MODEL, TILE_SIZE, STRIDE, TILE_METRES, STRIDE_METRES, BANDS, DEVICE, TTA, DBA = (
        "RASTERS", "INDEX", "MODEL", "TILE_SIZE", "STRIDE", "TILE_METRES", "STRIDE_METRES", "BANDS", "DEVICE",
        "TTA", "DBA")
    FAILED = "FAILED"
    # Tile size and stride: each in pixels or in metres, never both.
    PAIRS = ((TILE_SIZE, TILE_METRES, "the tile size"), (STRIDE, STRIDE_METRES, "the stride"))

    def name(self) -> str:
        return "build_index"

    def displayName(self) -> str:  # noqa: N802
        return "Build similarity index"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Cuts the rasters into tiles, embeds each tile with the ONNX model and stores the vectors in "
                "an index folder (not a temporary one: the index is kept for later searches). Re-running on "
                "the same folder only embeds new or changed rasters; cancelling leaves the previous index in "
                "use. Tile size and stride in pixels or in metres on the ground (not both); 0 or empty = the "
                "model's tile size (its input size unless it says otherwise) and half a tile. Bands: e.g. "
                "4,3,2 or 4 3 2; empty = RGB. Rasters that fail are listed by name with the reason in the log "
                "and in the FAILED output; the algorithm fails when no raster could be indexed.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.RASTERS, "Raster layers", QgsProcessing.SourceType.TypeRaster))
        project_file = QgsProject.instance().fileName()
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.INDEX, "Index folder (kept: not a temporary folder)",
            defaultValue=str(default_index_dir()) if project_file else None))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "ONNX model (empty: bundled default)", QgsProcessingParameterFile.Behavior.File,
            extension="onnx", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size in pixels (0: the model's tile size)",
            QgsProcessingParameterNumber.Type.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.STRIDE, "Stride in pixels (0: half a tile)", QgsProcessingParameterNumber.Type.Integer,
            defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_METRES, "Tile size in metres on the ground (instead of pixels)",
            QgsProcessingParameterNumber.Type.Double, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.STRIDE_METRES, "Stride in metres on the ground (instead of pixels)",
            QgsProcessingParameterNumber.Type.Double, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, "Bands, e.g. 4,3,2 or 4 3 2 (empty: RGB)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.TTA, "Rotation TTA: embed each tile as the mean of 4 rotations (4x slower)", defaultValue=False))
        dba = QgsProcessingParameterBoolean(
            self.DBA, "Database-side augmentation (DBA): search each tile by it and its 10 nearest neighbours "
                      "(unticked: the index keeps its own setting)", defaultValue=False)
        dba.setFlags(dba.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        self.addParameter(dba)
        self.addOutput(QgsProcessingOutputNumber("TILES_TOTAL", "Tiles in the index"))
        self.addOutput(QgsProcessingOutputNumber("TILES_INDEXED", "Tiles embedded by this run"))
        self.addOutput(QgsProcessingOutputString("SUMMARY", "Summary"))
        self.addOutput(QgsProcessingOutputString(self.FAILED,
                                                 "Rasters that failed (one 'raster: reason' a line)"))

    def checkParameterValues(self, parameters, context: QgsProcessingContext):  # noqa: N802
        """Checked before the run (the dialog shows the message; processing.run and qgis_process raise it)."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        problem = self._tiling_problem(parameters, context) or self._index_problem(parameters, context)
        return (False, problem) if problem else (True, "")

    def _tiling_problem(self, parameters, context: QgsProcessingContext) -> str:
        for pixels, metres, what in self.PAIRS:
            if self.parameterAsInt(parameters, pixels, context) and self._metres(parameters, metres, context):
                return f"Give {what} in pixels ({pixels}) or in metres ({metres}), not both"
        return ""

    def _index_problem(self, parameters, context: QgsProcessingContext) -> str:
        value = parameters.get(self.INDEX)
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            value = value.sink.staticValue()
        if value in (None, "", QgsProcessing.TEMPORARY_OUTPUT):
            return TEMPORARY_INDEX
        folder = Path(self.parameterAsFileOutput(parameters, self.INDEX, context)).absolute()
        if Path(QgsProcessingUtils.tempFolder()).absolute() in (folder, *folder.parents):
            return TEMPORARY_INDEX
        return ""

    def _metres(self, parameters, name: str, context: QgsProcessingContext) -> float | None:
        """An optional size in metres: None when empty or 0."""
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsDouble(parameters, name, context) or None

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.builder import build_index

        layers = self.parameterAsLayerList(parameters, self.RASTERS, context)
        rasters = tuple(Path(layer_file(layer, self.RASTERS)) for layer in layers)
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        try:
            tiling = TilingParams(tile_px=tile or None, stride_px=stride or None,
                                  tile_m=self._metres(parameters, self.TILE_METRES, context),
                                  stride_m=self._metres(parameters, self.STRIDE_METRES, context),
                                  bands=parse_bands(self.parameterAsString(parameters, self.BANDS, context)))
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from exc
        model = self.parameterAsFile(parameters, self.MODEL, context)
        with engine_errors():
            self._check_bands(tiling.bands, layers, model)
        index_dir = self.parameterAsFileOutput(parameters, self.INDEX, context)
        params = BuildParams(index_dir=Path(index_dir), rasters=rasters,
                             model_path=Path(model) if model else None, tiling=tiling,
                             device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                             tta=self.parameterAsBool(parameters, self.TTA, context),
                             dba=True if self.parameterAsBool(parameters, self.DBA, context) else None)
        try:
            with engine_errors():
                summary = build_index(params, progress=progress_reporter(feedback), is_cancelled=feedback.isCanceled)
        except QgsProcessingException as exc:
            failure = exc.__cause__
            if not isinstance(failure, BuildFailed):
                raise
            raise QgsProcessingException(self._report_failures(str(failure), feedback)) from failure
        failed = [f"{path}: {reason}" for path, reason in summary.failed]
        for line in failed:
            feedback.pushWarning(line)
        headline = summary.describe().splitlines()[0].rstrip(":")
        feedback.pushInfo(headline + (" (listed above)" if failed else ""))
        return {self.INDEX: index_dir, "TILES_TOTAL": summary.tiles_total,
                "TILES_INDEXED": summary.tiles_indexed, "SUMMARY": headline, self.FAILED: "\n".join(failed)}

    @staticmethod
    def _report_failures(message: str, feedback: QgsProcessingFeedback) -> str:
        """Every raster of a build that indexed none, once each in the log; the exception's one line.

        QGIS prints an algorithm's exception more than once (qgis_process: three times) and an error
        twice (also through the message log), so the reasons go to the log as warnings, printed once,
        and the exception only says what happened."""
        first, *rasters = message.splitlines()
        for line in rasters:
            feedback.pushWarning(line.strip())
        return f"{first.rstrip(':')} ({len(rasters)} raster(s) failed: reasons above)" if rasters else first

    @staticmethod
    def _check_bands(bands: tuple[int, ...] | None, layers, model: str) -> None:
        """Refuse bands the layers or the chosen model cannot give, before any raster is read."""
        from ..core.model import read_model

        model_bands = read_model(model).contract.bands if model and bands else None
        problem = band_problem(bands, [(layer.name(), layer.bandCount()) for layer in layers], model_bands)
        if problem:
            raise QgsProcessingException(problem)
