"""rsir:map_matches: every tile of an index that the feedback search of a labels layer scores at least a
threshold, dissolved into polygons and written to a map file (core/match_map.py, core/map_io.py)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
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


class MapMatchesAlgorithm(RsirAlgorithm):
    INDEX, LABELS, THRESHOLD, OUTPUT = "INDEX", "LABELS", "THRESHOLD", "OUTPUT"
    POLYGONS, TILES, AREA_M2 = "POLYGONS", "TILES", "AREA_M2"

    def name(self) -> str:
        return "map_matches"

    def displayName(self) -> str:  # noqa: N802
        return "Map all matches"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Scores every tile of the index with the classifier a labels layer trains (polygons with the "
                "fields 'raster' and 'label': positive/negative, as `rsir labels` and the plugin write them): "
                "the probability the search reports with 2+ positive and 2+ negative boxes, else the cosine with "
                "the Rocchio query. Tiles scoring at least the threshold are merged where they touch or overlap, "
                "raster by raster in the raster's CRS, into polygons with their mean and maximum score, tile "
                "count and area (m²). Written as a GeoPackage or GeoJSON map file (layer rsir_map) that records "
                "the threshold, the labels, the index and the model.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(index_folder_parameter(self.INDEX))
        self.addParameter(labels_parameter(self.LABELS))
        self.addParameter(QgsProcessingParameterNumber(
            self.THRESHOLD, "Threshold (the score a tile needs: a probability, 0-1)",
            QgsProcessingParameterNumber.Type.Double, 0.5, minValue=-1.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, "Map file", "GeoPackage (*.gpkg);;GeoJSON (*.geojson)"))
        self.addOutput(QgsProcessingOutputNumber(self.POLYGONS, "Polygons"))
        self.addOutput(QgsProcessingOutputNumber(self.TILES, "Matched tiles"))
        self.addOutput(QgsProcessingOutputNumber(self.AREA_M2, "Area (m²)"))

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.map_io import map_format, write_map
        from ..core.match_map import MapParams, dissolve, score_tiles

        index_dir = self.parameterAsFile(parameters, self.INDEX, context)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        labels = self.required_labels(parameters, context, self.LABELS)
        threshold = self.parameterAsDouble(parameters, self.THRESHOLD, context)
        with engine_errors():
            map_format(output)
            read = read_labels_layer(labels, project_rasters(context.project()), context, feedback)
            source = labels_source(labels)
            scores = score_tiles(index_dir, read.feedback, MapParams(threshold=threshold), source,
                                 progress_reporter(feedback), is_cancelled=feedback.isCanceled)
            result = dissolve(scores, threshold)
            write_map(result, output, index_dir)
        if scores.scoring != "probability":
            feedback.pushWarning("Fewer than two positive and two negative boxes: the scores are cosines with "
                                 "the Rocchio query, not probabilities")
        feedback.pushInfo(result.describe())
        return {self.OUTPUT: output, self.POLYGONS: len(result.polygons), self.TILES: result.tiles,
                self.AREA_M2: result.area_m2}
