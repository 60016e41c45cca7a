"""A search through time on the map: the `rsir changes` layer filled and styled like search hits (re-made
when the map CRS changed), a place zoomed to, the layer removed, and the status line for an outcome."""
from __future__ import annotations

from qgis.core import QgsProject

from ..change_requests import ChangeOutcome
from ..layers import make_changes_layer, owned_layer, replace_features, style_hits_by_score
from .results import frame_hit, result_layer

CHANGES_ROLE = "changes"


def show_changes_on_map(project: QgsProject, outcome: ChangeOutcome) -> None:
    layer = result_layer(project, CHANGES_ROLE, make_changes_layer, outcome.crs)
    replace_features(layer, outcome.features)
    style_hits_by_score(layer, [change.score for change in outcome.result.hits])


def remove_changes(project: QgsProject) -> None:
    layer = owned_layer(project, CHANGES_ROLE)
    if layer is not None:
        project.removeMapLayer(layer.id())


def frame_change(canvas, project: QgsProject, rank: int) -> None:
    """Show place `rank` with some context around it, and flash it."""
    frame_hit(canvas, project, rank, CHANGES_ROLE)


def describe_changes(outcome: ChangeOutcome) -> str:
    """'5 places by change from 2019 to 2024 in 3.1 s (CPU); 49 of 49 places compared.'"""
    result = outcome.result
    names = outcome.request.names
    how = "like the example(s)" if outcome.request.examples else f"by {result.scoring}"
    compared = sum(pair.compared for pair in result.pairs)
    places = sum(pair.places for pair in result.pairs)
    device = "CUDA" if "CUDA" in result.provider else "CPU" if "Execution" in result.provider else "stored"
    return (f"{len(result.hits)} place(s) {how} from {names[0]} to {names[1]} in {result.seconds:.1f} s "
            f"({device}); {compared} of {places} places compared.")
