"""rsir:find_similar_change: the places of a pair of dates whose change is most like the change inside an
extent (search by change example), as a polygon layer."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterLayer,
)

from ..core.examples import LabelledBox
from ..layers import crs_for_engine
from .change_hotspots import PLACES_NOTE, ChangeAlgorithm
from .common import engine_errors, layer_file


class FindSimilarChangeAlgorithm(ChangeAlgorithm):
    RASTER, EXTENT, EXCLUDE_OVERLAP, OTHER_PAIRS = "RASTER", "EXTENT", "EXCLUDE_OVERLAP", "OTHER_PAIRS"

    def name(self) -> str:
        return "find_similar_change"

    def displayName(self) -> str:  # noqa: N802
        return "Find similar changes"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("The example is an extent (in any CRS) on one of the before or after rasters that changed the "
                "way sought; it is read at both dates. Places are ranked by the cosine between their change "
                "(after - before, normalised) and the example's, damped where a place changed much less; places "
                "overlapping the example are left out. The index's other stored pairs (from earlier runs) are "
                "ranked too unless unticked. " + PLACES_NOTE)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_dates()
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.RASTER, "Raster the example extent is on (a before or an after raster)"))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Example of the change sought"))
        self.add_advanced(
            QgsProcessingParameterBoolean(self.EXCLUDE_OVERLAP, "Exclude places overlapping the example", True),
            QgsProcessingParameterBoolean(self.OTHER_PAIRS, "Also rank the index's other stored pairs", True))
        self.add_output("Similar changes")

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.change_rank import search_change

        before, after, crs = self.dates(parameters, context)
        raster = self.parameterAsRasterLayer(parameters, self.RASTER, context)
        path = layer_file(raster, self.RASTER)
        extent_crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        if not extent_crs.isValid():
            extent_crs = raster.crs()
        extent = self.parameterAsExtent(parameters, self.EXTENT, context, extent_crs)
        if extent.isEmpty():
            raise QgsProcessingException(f"{self.EXTENT}: the example extent is empty")
        example = LabelledBox(raster=path, bbox=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                                 extent.yMaximum()),
                              crs=crs_for_engine(extent_crs), positive=True)
        params = self.change_params(
            parameters, context,
            exclude_example_overlap=self.parameterAsBool(parameters, self.EXCLUDE_OVERLAP, context),
            other_pairs=self.parameterAsBool(parameters, self.OTHER_PAIRS, context))
        index_dir = self.parameterAsFile(parameters, self.INDEX, context)
        feedback.pushInfo(f"Example {example.bbox} in {extent_crs.authid() or 'custom CRS'} on {path}")
        with engine_errors():
            result = search_change(index_dir, before, after, [example], params, self.progress(feedback),
                                   is_cancelled=feedback.isCanceled)
        if result.all_excluded:
            feedback.pushWarning("Every place compared overlaps the example: untick 'Exclude places "
                                 "overlapping the example' to see them")
        return self.write(result, parameters, context, feedback, crs)
