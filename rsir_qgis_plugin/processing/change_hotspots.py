"""rsir:change_hotspots: the places of indexed before rasters that changed most at the after date, as a
polygon layer; and ChangeAlgorithm, what it shares with rsir:find_similar_change."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

from ..core.change_params import HOTSPOT_SCORES, ChangeParams
from ..core.params import DEVICES
from ..layers import HitFeatureFactory, change_fields
from .common import RsirAlgorithm, engine_errors, index_folder_parameter, layer_file, progress_reporter

PLACES_NOTE = ("The before rasters must be indexed (rsir:build_index): their tiles are the places compared. The "
               "after rasters are read on each place's footprint and need not be indexed, nor share a grid, CRS or "
               "resolution; their embeddings are kept in the index folder, so a second run on the same pair "
               "embeds nothing. The output is in the first before raster's CRS, with fields rank, score, before "
               "and after (the raster files).")


class ChangeAlgorithm(RsirAlgorithm):
    """The index, the two dates, the number of places and the output of both change algorithms."""

    INDEX, BEFORE, AFTER, K, MIN_SCORE, DEVICE, OUTPUT = (
        "INDEX", "BEFORE", "AFTER", "K", "MIN_SCORE", "DEVICE", "OUTPUT")

    def add_dates(self) -> None:
        self.addParameter(index_folder_parameter(self.INDEX))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.BEFORE, "Before: indexed raster layer(s) of the earlier date", QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.AFTER, "After: raster layer(s) of the later date, of the same ground",
            QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterNumber(
            self.K, "Number of places", QgsProcessingParameterNumber.Type.Integer, defaultValue=20, minValue=1))

    def add_advanced(self, *parameters: QgsProcessingParameterDefinition) -> None:
        common = (QgsProcessingParameterNumber(self.MIN_SCORE, "Minimum score (empty: none)",
                                               QgsProcessingParameterNumber.Type.Double, optional=True,
                                               minValue=-1.0, maxValue=2.0),
                  QgsProcessingParameterEnum(self.DEVICE, "Device", options=list(DEVICES), defaultValue=0))
        for parameter in (*parameters, *common):
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(parameter)

    def add_output(self, description: str) -> None:
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, description, QgsProcessing.SourceType.TypeVectorPolygon))

    def dates(self, parameters, context: QgsProcessingContext) -> tuple[list[str], list[str],
                                                                         QgsCoordinateReferenceSystem]:
        """The before and after raster files, and the first before raster's CRS (the output's)."""
        before = self.parameterAsLayerList(parameters, self.BEFORE, context)
        after = self.parameterAsLayerList(parameters, self.AFTER, context)
        if not before or not after:
            raise QgsProcessingException("Give at least one before and one after raster layer")
        return ([layer_file(layer, self.BEFORE) for layer in before],
                [layer_file(layer, self.AFTER) for layer in after], before[0].crs())

    def change_params(self, parameters, context: QgsProcessingContext, **settings) -> ChangeParams:
        min_score = parameters.get(self.MIN_SCORE)
        try:
            return ChangeParams(k=self.parameterAsInt(parameters, self.K, context),
                                min_score=None if min_score in (None, "") else
                                self.parameterAsDouble(parameters, self.MIN_SCORE, context),
                                device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)], **settings)
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def write(self, result, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback,
              crs: QgsCoordinateReferenceSystem) -> dict:
        """The places as polygons in `crs`, and each pair's counts and the notes in the log."""
        for pair in result.pairs:
            feedback.pushInfo(pair.describe())
        for note in result.notes:
            feedback.pushWarning(note)
        fields = change_fields()
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields,
                                             QgsWkbTypes.Type.Polygon, crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        factory = HitFeatureFactory(crs, context.transformContext())
        for change in result.hits:
            sink.addFeature(factory.change_feature(change, fields), QgsFeatureSink.Flag.FastInsert)
        feedback.pushInfo(f"{len(result.hits)} place(s), {result.scoring} scores, in {result.seconds:.1f} s "
                          f"({result.provider})")
        return {self.OUTPUT: dest_id}


class ChangeHotspotsAlgorithm(ChangeAlgorithm):
    SCORE = "SCORE"

    def name(self) -> str:
        return "change_hotspots"

    def displayName(self) -> str:  # noqa: N802
        return "Change hot spots"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Ranks the places of the before rasters by how much they changed at the after date: 1 - cosine "
                "of their two embeddings (0: the same to the model, up to 2), overlapping places thinned. "
                "'unusual' scores instead how unlike the after date of the places that looked alike before a "
                "place's after date is (it discounts a change every place of a kind went through, such as a "
                "season). " + PLACES_NOTE)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_dates()
        self.addParameter(QgsProcessingParameterEnum(self.SCORE, "Score", options=list(HOTSPOT_SCORES),
                                                     defaultValue=0))
        self.add_advanced()
        self.add_output("Change hot spots")

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.change_rank import change_hotspots

        before, after, crs = self.dates(parameters, context)
        params = self.change_params(
            parameters, context, hotspots=HOTSPOT_SCORES[self.parameterAsEnum(parameters, self.SCORE, context)])
        index_dir = self.parameterAsFile(parameters, self.INDEX, context)
        with engine_errors():
            result = change_hotspots(index_dir, before, after, params, progress_reporter(feedback),
                                     is_cancelled=feedback.isCanceled)
        return self.write(result, parameters, context, feedback, crs)
