"""rsir:build_index: index raster layers (incrementally) into a folder."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.params import DEVICES, BuildParams, TilingParams
from ..settings import band_problem, parse_bands
from .common import engine_errors, layer_file, require_engine


class BuildIndexAlgorithm(QgsProcessingAlgorithm):
    RASTERS, INDEX, MODEL, TILE_SIZE, STRIDE, BANDS, DEVICE, TTA = (
        "RASTERS", "INDEX", "MODEL", "TILE_SIZE", "STRIDE", "BANDS", "DEVICE", "TTA")

    def name(self) -> str:
        return "build_index"

    def displayName(self) -> str:  # noqa: N802
        return "Build similarity index"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Cuts the rasters into tiles, embeds each tile with the ONNX model and stores the vectors in "
                "an index folder. Re-running on the same folder only embeds new or changed rasters; "
                "cancelling leaves the previous index in use. Tile size 0 = the model's input size, "
                "stride 0 = half a tile (both in pixels). Bands: e.g. 4,3,2; empty = RGB.")

    def createInstance(self) -> "BuildIndexAlgorithm":  # noqa: N802
        return BuildIndexAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.RASTERS, "Raster layers", QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterFolderDestination(self.INDEX, "Index folder"))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "ONNX model (empty: bundled default)", QgsProcessingParameterFile.Behavior.File,
            extension="onnx", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size in pixels (0: model input size)",
            QgsProcessingParameterNumber.Type.Integer,
            defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.STRIDE, "Stride in pixels (0: half a tile)", QgsProcessingParameterNumber.Type.Integer,
            defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, "Bands, comma separated (empty: RGB)", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.TTA, "Rotation TTA: embed each tile as the mean of 4 rotations (4x slower)", defaultValue=False))
        self.addOutput(QgsProcessingOutputNumber("TILES_TOTAL", "Tiles in the index"))
        self.addOutput(QgsProcessingOutputNumber("TILES_INDEXED", "Tiles embedded by this run"))
        self.addOutput(QgsProcessingOutputString("SUMMARY", "Summary"))

    def processAlgorithm(self, parameters, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        require_engine()
        from ..core.builder import build_index

        layers = self.parameterAsLayerList(parameters, self.RASTERS, context)
        rasters = tuple(Path(layer_file(layer, self.RASTERS)) for layer in layers)
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        try:
            tiling = TilingParams(tile_px=tile or None, stride_px=stride or None,
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
                             tta=self.parameterAsBool(parameters, self.TTA, context))

        def progress(percent: float, message: str) -> None:
            feedback.setProgress(percent)
            feedback.setProgressText(message)

        with engine_errors():
            summary = build_index(params, progress=progress, is_cancelled=feedback.isCanceled)
        for path, reason in summary.failed:
            feedback.reportError(f"{path}: {reason}")
        feedback.pushInfo(summary.describe())
        return {self.INDEX: index_dir, "TILES_TOTAL": summary.tiles_total,
                "TILES_INDEXED": summary.tiles_indexed, "SUMMARY": summary.describe()}

    @staticmethod
    def _check_bands(bands: tuple[int, ...] | None, layers, model: str) -> None:
        """Refuse bands the layers or the chosen model cannot give, before any raster is read."""
        from ..core.model import read_model

        model_bands = read_model(model).contract.bands if model and bands else None
        problem = band_problem(bands, [(layer.name(), layer.bandCount()) for layer in layers], model_bands)
        if problem:
            raise QgsProcessingException(problem)
