"""A search through time on the map: the `rsir changes` layer filled and styled like search hits (re-made
when the map CRS changed), the analyst's change examples in the `rsir change examples` layer (styled as the
`rsir labels` layer: green positives, red negatives), a place zoomed to, the layers removed, and the status
line for an outcome."""
from __future__ import annotations

from collections.abc import Sequence

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransformContext, QgsProject, QgsVectorLayer

from ..change_requests import ChangeOutcome
from ..labels.convert import features_from_feedback
from ..labels.layer import label_fields, style_labels
from ..layers import (
    ROLE_PROPERTY,
    make_changes_layer,
    owned_layer,
    polygon_memory_layer,
    replace_features,
    style_hits_by_score,
)
from .results import frame_hit, result_layer

CHANGES_ROLE = "changes"
EXAMPLES_ROLE = "change-examples"
EXAMPLES_LAYER_NAME = "rsir change examples"


def show_changes_on_map(project: QgsProject, outcome: ChangeOutcome) -> None:
    layer = result_layer(project, CHANGES_ROLE, make_changes_layer, outcome.crs)
    replace_features(layer, outcome.features)
    style_hits_by_score(layer, [change.score for change in outcome.result.hits])


def remove_changes(project: QgsProject) -> None:
    for role in (CHANGES_ROLE, EXAMPLES_ROLE):
        layer = owned_layer(project, role)
        if layer is not None:
            project.removeMapLayer(layer.id())


def make_examples_layer(crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    """The change examples' layer: the labels layout (raster, label) and style, marked as the plugin's."""
    layer = polygon_memory_layer(EXAMPLES_LAYER_NAME, crs, label_fields())
    layer.setCustomProperty(ROLE_PROPERTY, EXAMPLES_ROLE)
    layer.setCustomProperty("skipMemoryLayersCheck", 1)  # re-drawn in a drag; nothing to lose on close
    style_labels(layer)
    return layer


def show_change_examples(project: QgsProject, examples: Sequence, crs: QgsCoordinateReferenceSystem,
                         context: QgsCoordinateTransformContext) -> QgsVectorLayer:
    """The examples dragged so far (LabelledBox, each in the CRS it was drawn in) as the examples layer."""
    from ..core.examples import Feedback

    layer = result_layer(project, EXAMPLES_ROLE, make_examples_layer, crs)
    replace_features(layer, features_from_feedback(Feedback(tuple(examples)), crs, context))
    return layer


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
