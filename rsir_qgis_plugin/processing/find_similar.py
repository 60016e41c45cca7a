"""rsir:find_similar: the tiles of an index most like an extent of a raster, as a polygon layer."""
from __future__ import annotations

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsWkbTypes,
)

from ..core.params import SearchParams
from ..layers import HitFeatureFactory, crs_for_engine, hit_fields
from .common import RsirAlgorithm, engine_errors, index_folder_parameter


class FindSimilarAlgorithm(RsirAlgorithm):
    INDEX, RASTER, EXTENT, K, TTA, EXCLUDE_OVERLAP, MIN_SCORE, RERANK, OUTPUT = (
        "INDEX", "RASTER", "EXTENT", "K", "TTA", "EXCLUDE_OVERLAP", "MIN_SCORE", "RERANK", "OUTPUT")

    def name(self) -> str:
        return "find_similar"

    def displayName(self) -> str:  # noqa: N802
        return "Find similar places"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Embeds the extent of the raster (the extent may be in any CRS) and returns the K most similar "
                "tiles of the index as polygons in the raster's CRS, with fields rank, score (cosine) and "
                "raster. The index must have been built with rsir:build_index. Re-ranking (on by default) "
                "searches again with the query blended with its 10 best hits (query expansion), and uses the "
                "index's DBA vectors where it has them; off, tiles are ranked by the query alone.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(index_folder_parameter(self.INDEX))
        self.addParameter(QgsProcessingParameterRasterLayer(self.RASTER, "Raster holding the query extent"))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Query extent"))
        self.addParameter(QgsProcessingParameterNumber(
            self.K, "Number of hits", QgsProcessingParameterNumber.Type.Integer, defaultValue=20, minValue=1))
        self.addParameter(QgsProcessingParameterBoolean(self.TTA, "Rotation test-time augmentation", False))
        advanced = [
            QgsProcessingParameterBoolean(self.EXCLUDE_OVERLAP, "Exclude tiles overlapping the query", True),
            QgsProcessingParameterNumber(self.MIN_SCORE, "Minimum score (empty: none)",
                                         QgsProcessingParameterNumber.Type.Double, optional=True,
                                         minValue=-1.0, maxValue=1.0),
            QgsProcessingParameterBoolean(self.RERANK, "Re-rank by neighbours (query expansion, DBA)", True),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Similar places", QgsProcessing.SourceType.TypeVectorPolygon))

    def process(self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> dict:
        from ..core.search import search_box

        raster, path, extent, extent_crs = self.raster_extent(parameters, context, self.RASTER, self.EXTENT, "query")
        min_score = parameters.get(self.MIN_SCORE)
        try:
            params = SearchParams(k=self.parameterAsInt(parameters, self.K, context),
                                  tta=self.parameterAsBool(parameters, self.TTA, context),
                                  exclude_query_overlap=self.parameterAsBool(parameters, self.EXCLUDE_OVERLAP,
                                                                             context),
                                  min_score=None if min_score in (None, "") else
                                  self.parameterAsDouble(parameters, self.MIN_SCORE, context),
                                  rerank=self.parameterAsBool(parameters, self.RERANK, context))
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from exc
        index_dir = self.parameterAsFile(parameters, self.INDEX, context)
        bbox = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        feedback.pushInfo(f"Query {bbox} in {extent_crs.authid() or 'custom CRS'} on {path}")
        with engine_errors():
            result = search_box(index_dir, path, bbox, crs_for_engine(extent_crs), params,
                                is_cancelled=feedback.isCanceled)

        fields = hit_fields()
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields,
                                             QgsWkbTypes.Type.Polygon, raster.crs())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        factory = HitFeatureFactory(raster.crs(), context.transformContext())
        for hit in result.hits:
            sink.addFeature(factory.hit_feature(hit, fields), QgsFeatureSink.Flag.FastInsert)
        feedback.pushInfo(f"{len(result.hits)} hit(s) in {result.seconds:.1f} s ({result.provider})")
        return {self.OUTPUT: dest_id}
