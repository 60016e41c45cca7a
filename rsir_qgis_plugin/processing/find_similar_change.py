"""rsir:find_similar_change: the places of a pair of dates whose change is most like the change inside an
extent, or like the positive (and unlike the negative) examples of a labels layer (search by change example),
as a polygon layer."""
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
from .common import engine_errors, labels_parameter, progress_reporter, read_labels_layer


class FindSimilarChangeAlgorithm(ChangeAlgorithm):
    RASTER, EXTENT, LABELS, EXCLUDE_OVERLAP, OTHER_PAIRS = (
        "RASTER", "EXTENT", "LABELS", "EXCLUDE_OVERLAP", "OTHER_PAIRS")

    def name(self) -> str:
        return "find_similar_change"

    def displayName(self) -> str:  # noqa: N802
        return "Find similar changes"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("The example is an extent (in any CRS) on one of the before or after rasters that changed the "
                "way sought, and/or the boxes of a labels layer (polygons with the fields 'raster' and 'label': "
                "'positive' for a change sought, 'negative' for one that is not; the layout of `rsir labels` and "
                "of the plugin's labels, an empty raster meaning the raster under the box). Each example is read "
                "at both dates. Places are ranked by the cosine between their change (after - before, "
                "normalised) and the examples' (Rocchio: the positives' mean less half the negatives'), or with "
                "2+ positives and 2+ negatives by a logistic regression's probability, as relevance feedback "
                "ranks tiles; damped where a place changed much less; places overlapping an example are left "
                "out. The index's other stored pairs (from earlier runs) are ranked too unless unticked. "
                + PLACES_NOTE)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_dates()
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.RASTER, "Raster the example extent is on (a before or an after raster)", optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Example of the change sought", optional=True))
        self.addParameter(labels_parameter(self.LABELS, optional=True))
        self.add_advanced(
            QgsProcessingParameterBoolean(self.EXCLUDE_OVERLAP, "Exclude places overlapping the example", True),
            QgsProcessingParameterBoolean(self.OTHER_PAIRS, "Also rank the index's other stored pairs", True))
        self.add_output("Similar changes")

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.change_rank import search_change

        before, after, crs = self.dates(parameters, context)
        examples = self.extent_example(parameters, context, feedback)
        examples += self.labelled_examples(parameters, context, feedback)
        if not examples:
            raise QgsProcessingException(f"Give an example: an {self.EXTENT} on a {self.RASTER}, or a {self.LABELS} "
                                         "layer with at least one positive box")
        params = self.change_params(
            parameters, context,
            exclude_example_overlap=self.parameterAsBool(parameters, self.EXCLUDE_OVERLAP, context),
            other_pairs=self.parameterAsBool(parameters, self.OTHER_PAIRS, context))
        index_dir = self.parameterAsFile(parameters, self.INDEX, context)
        with engine_errors():
            result = search_change(index_dir, before, after, examples, params, progress_reporter(feedback),
                                   is_cancelled=feedback.isCanceled)
        if result.all_excluded:
            feedback.pushWarning("Every place compared overlaps an example: untick 'Exclude places "
                                 "overlapping the example' to see them")
        return self.write(result, parameters, context, feedback, crs)

    def extent_example(self, parameters, context: QgsProcessingContext,
                       feedback: QgsProcessingFeedback) -> list[LabelledBox]:
        """The example extent as a positive box on its raster; none when no extent is given."""
        if parameters.get(self.EXTENT) in (None, ""):
            return []
        if self.parameterAsRasterLayer(parameters, self.RASTER, context) is None:
            raise QgsProcessingException(f"{self.RASTER}: give the raster the example extent is on")
        _, path, extent, extent_crs = self.raster_extent(parameters, context, self.RASTER, self.EXTENT, "example")
        feedback.pushInfo(f"Example {extent.toString()} in {extent_crs.authid() or 'custom CRS'} on {path}")
        return [LabelledBox(raster=path, bbox=(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                               extent.yMaximum()), crs=crs_for_engine(extent_crs), positive=True)]

    def labelled_examples(self, parameters, context: QgsProcessingContext,
                          feedback: QgsProcessingFeedback) -> list[LabelledBox]:
        """The labels layer's boxes, read by the rules every labels reader of rsir follows
        (core/label_records.py); each feature left out is a warning."""
        labels = self.parameterAsVectorLayer(parameters, self.LABELS, context)
        if labels is None:
            return []
        read = read_labels_layer(labels, [*self.parameterAsLayerList(parameters, self.BEFORE, context),
                                          *self.parameterAsLayerList(parameters, self.AFTER, context)],
                                 context, feedback)
        return list(read.feedback.boxes)
