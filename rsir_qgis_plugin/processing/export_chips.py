"""rsir:export_chips: the labelled boxes of a labels layer as image chips to train a model on (core/chips.py)."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from ..layers import project_rasters
from .common import (
    RsirAlgorithm,
    engine_errors,
    index_folder_parameter,
    labels_parameter,
    labels_source,
    progress_reporter,
    read_labels_layer,
)


class ExportChipsAlgorithm(RsirAlgorithm):
    INDEX, LABELS, OUTPUT, PER_CLASS, SEED = "INDEX", "LABELS", "OUTPUT", "PER_CLASS", "SEED"
    POSITIVE, NEGATIVE = "POSITIVE", "NEGATIVE"

    def name(self) -> str:
        return "export_chips"

    def displayName(self) -> str:  # noqa: N802
        return "Export training chips"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Writes each box of a labels layer (polygons with the fields 'raster' and 'label': "
                "positive/negative, as the plugin's `rsir labels` layer and `rsir search --save-labels` write "
                "them) as a georeferenced GeoTIFF chip, read as a query box is: the bands the raster was indexed "
                "with, resampled to the index model's input size. Positives go to OUTPUT/positive, negatives "
                "to OUTPUT/negative (the class 'not the target'), with chips.csv (raster, box, label, CRS, "
                "file) and chips.json (the labels, index and model). The folder is what `python -m training.fit "
                "--data OUTPUT --init MODEL.onnx --freeze-bn` fine-tunes on (README: Teach rsir your target). "
                "The output folder must be new, empty, or an earlier chips folder (replaced whole).")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(index_folder_parameter(self.INDEX))
        self.addParameter(labels_parameter(self.LABELS))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Chips folder"))
        self.addParameter(QgsProcessingParameterNumber(
            self.PER_CLASS, "At most this many chips per class (0: every box)",
            QgsProcessingParameterNumber.Type.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEED, "Seed of the per-class choice", QgsProcessingParameterNumber.Type.Integer,
            defaultValue=0, minValue=0))
        self.addOutput(QgsProcessingOutputNumber(self.POSITIVE, "Positive chips"))
        self.addOutput(QgsProcessingOutputNumber(self.NEGATIVE, "Negative chips"))

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.chips import ChipParams, export_chips

        index_dir = self.parameterAsFile(parameters, self.INDEX, context)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        labels = self.required_labels(parameters, context, self.LABELS)
        with engine_errors():
            read = read_labels_layer(labels, project_rasters(context.project()), context, feedback)
            source = labels_source(labels)
            params = ChipParams(index_dir=Path(index_dir), labels=Path(source), out_dir=Path(output),
                                per_class=self.parameterAsInt(parameters, self.PER_CLASS, context),
                                seed=self.parameterAsInt(parameters, self.SEED, context))
            summary = export_chips(params, progress_reporter(feedback), feedback.isCanceled, read)
        for note in summary.notes:
            feedback.pushWarning(note)
        feedback.pushInfo(summary.describe())
        return {self.OUTPUT: str(summary.out_dir), self.POSITIVE: summary.counts["positive"],
                self.NEGATIVE: summary.counts["negative"]}
