"""The `rsir` Processing provider: toolbox, graphical modeler, processing.run and qgis_process."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .build_index import BuildIndexAlgorithm
from .change_hotspots import ChangeHotspotsAlgorithm
from .common import ICON
from .estimate_precision import EstimatePrecisionAlgorithm
from .export_chips import ExportChipsAlgorithm
from .find_similar import FindSimilarAlgorithm
from .find_similar_change import FindSimilarChangeAlgorithm
from .map_matches import MapMatchesAlgorithm


class RsirProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "rsir"

    def name(self) -> str:
        return "rsir (image retrieval)"

    def longName(self) -> str:  # noqa: N802
        return "rsir: remote-sensing image retrieval"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(BuildIndexAlgorithm())
        self.addAlgorithm(FindSimilarAlgorithm())
        self.addAlgorithm(ChangeHotspotsAlgorithm())
        self.addAlgorithm(FindSimilarChangeAlgorithm())
        self.addAlgorithm(MapMatchesAlgorithm())
        self.addAlgorithm(EstimatePrecisionAlgorithm())
        self.addAlgorithm(ExportChipsAlgorithm())
