"""rsir:estimate_precision: a marked review sample (`rsir review`, or the dock's Review panel) -> the map's
estimated precision with its 95 % interval, a table of it and each score stratum's, and optionally the
marked polygons written as labels (core/review.py, core/review_io.py)."""
from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsWkbTypes,
)

from ..fields import field_type
from .common import RsirAlgorithm, engine_errors

# The table: one row for the whole map (stratum 0), then one a stratum, lowest scores first.
TABLE_FIELDS = (("stratum", "int"), ("score_low", "double"), ("score_high", "double"), ("polygons", "int"),
                ("reviewed", "int"), ("relevant", "int"), ("precision", "double"), ("low95", "double"),
                ("high95", "double"))


class EstimatePrecisionAlgorithm(RsirAlgorithm):
    SAMPLE, LABELS_OUT, OUTPUT = "SAMPLE", "LABELS_OUT", "OUTPUT"
    PRECISION, LOW, HIGH, REVIEWED = "PRECISION", "LOW", "HIGH", "REVIEWED"

    def name(self) -> str:
        return "estimate_precision"

    def displayName(self) -> str:  # noqa: N802
        return "Estimate a map's precision"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("From a review sample whose polygons are marked (field 'relevant': yes or no; drawn by `rsir "
                "review MAP --sample N --out F` or the results panel's Review a sample): the map's precision, "
                "each score stratum weighted by its share of the map, with a 95 % stratified Wilson interval, "
                "and each stratum's precision with its Wilson interval, as a table (stratum 0: the whole map) "
                "and in the log. Unmarked polygons are left out. Optionally writes the marked polygons as "
                "labels (relevant = positive) for the next feedback search or map.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.SAMPLE, "Marked review sample", behavior=QgsProcessingParameterFile.Behavior.File,
            fileFilter="GeoPackage or GeoJSON (*.gpkg *.geojson *.json)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.LABELS_OUT, "Labels file (the marked polygons)", "GeoPackage (*.gpkg);;GeoJSON (*.geojson)",
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Precision estimate"))
        self.addOutput(QgsProcessingOutputNumber(self.PRECISION, "Precision"))
        self.addOutput(QgsProcessingOutputNumber(self.LOW, "95 % interval: low"))
        self.addOutput(QgsProcessingOutputNumber(self.HIGH, "95 % interval: high"))
        self.addOutput(QgsProcessingOutputNumber(self.REVIEWED, "Polygons reviewed"))

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.review_io import read_review, write_review_labels

        path = self.parameterAsFile(parameters, self.SAMPLE, context)
        labels_out = self.parameterAsFileOutput(parameters, self.LABELS_OUT, context)
        with engine_errors():
            review = read_review(path)
            if review.marked == 0:
                raise QgsProcessingException(f"{path}: no polygon is marked yet: fill field 'relevant' with yes or no")
            estimate = review.estimate()
            written = write_review_labels(review, labels_out) if labels_out else None
        for line in estimate.describe():
            feedback.pushInfo(line)
        if review.marked < len(review.items):
            feedback.pushWarning(f"{len(review.items) - review.marked} of {len(review.items)} polygons are not "
                                 "marked and were left out")
        if written:
            feedback.pushInfo(f"{written[1]} positive and {written[2]} negative labels written to {written[0]}")
        fields = QgsFields()
        for name, kind in TABLE_FIELDS:
            fields.append(QgsField(name, field_type(kind)))
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Type.NoGeometry)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        whole = (0, min(s.low for s in review.strata), max(s.high for s in review.strata), estimate.population,
                 estimate.reviewed, estimate.relevant, estimate.precision, estimate.low, estimate.high)
        rows = [whole] + [(part.stratum.number, part.stratum.low, part.stratum.high, part.stratum.size,
                           part.reviewed, part.relevant, part.precision, part.low, part.high)
                          for part in estimate.strata]
        for row in rows:
            feature = QgsFeature(fields)
            feature.setAttributes(list(row))
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        return {self.OUTPUT: dest, self.PRECISION: estimate.precision, self.LOW: estimate.low,
                self.HIGH: estimate.high, self.REVIEWED: estimate.reviewed,
                **({self.LABELS_OUT: labels_out} if labels_out else {})}
