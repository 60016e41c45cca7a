"""What a change task is given and gives back: ChangeRequest (the index, the two dates and, for a search by
change, the example boxes) and ChangeOutcome, the places as features in the map CRS with their before/after
thumbnails, made in the task's worker thread by change_outcome()."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransformContext, QgsFeature

from .change_pixels import read_change_thumbnails
from .core.change_params import ChangeParams
from .layers import HitFeatureFactory, change_fields


@dataclass(frozen=True)
class ChangeRequest:
    """Hot spots when `examples` is empty, else a search by change with those boxes (core LabelledBox)."""

    index_dir: Path
    before: tuple[str, ...]  # indexed raster files of the earlier date
    after: tuple[str, ...]  # raster files of the later date
    params: ChangeParams
    output_crs: QgsCoordinateReferenceSystem
    transform_context: QgsCoordinateTransformContext
    examples: tuple = ()  # core.examples.LabelledBox
    names: tuple[str, str] = ("before", "after")  # the layers' names, for messages
    thumbnails: bool = True

    def describe(self) -> str:
        what = "searching by change" if self.examples else "finding change hot spots"
        return f"{what} from {self.names[0]} to {self.names[1]}"


@dataclass
class ChangeOutcome:
    request: ChangeRequest
    result: Any  # core.change_results.ChangeResult
    crs: QgsCoordinateReferenceSystem  # of the features
    features: list[QgsFeature]
    thumbnails: dict[int, tuple] = field(default_factory=dict)  # rank -> (before, after) uint8 arrays or None


def change_outcome(result, request: ChangeRequest, is_cancelled: Callable[[], bool]) -> ChangeOutcome:
    """In the worker thread: the places as features in the output CRS, and their thumbnails."""
    factory = HitFeatureFactory(request.output_crs, request.transform_context)
    fields = change_fields()
    features = [factory.change_feature(change, fields) for change in result.hits]
    thumbnails = read_change_thumbnails(result.hits, is_cancelled=is_cancelled) if request.thumbnails else {}
    return ChangeOutcome(request, result, request.output_crs, features, thumbnails)
