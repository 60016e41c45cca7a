"""A search outcome on the map: the `rsir hits` and `rsir query` layers filled and styled (re-made
when the map CRS changed), a hit zoomed to, the layers removed, and the status line for an outcome."""
from __future__ import annotations

from typing import Callable

from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsVectorLayer

from ..layers import (
    add_on_top,
    make_hits_layer,
    make_query_layer,
    owned_layer,
    replace_features,
    style_hits_by_score,
)
from ..search_requests import SearchOutcome

RESULT_ROLES = ("hits", "query")


def show_on_map(project: QgsProject, outcome: SearchOutcome) -> None:
    """The outcome's hits and query box in the result layers, in place of the previous ones."""
    hits_layer = result_layer(project, "hits", make_hits_layer, outcome.crs)
    query_layer = result_layer(project, "query", make_query_layer, outcome.crs)
    replace_features(hits_layer, outcome.hit_features)
    replace_features(query_layer, [outcome.query_feature] if outcome.query_feature else [])
    style_hits_by_score(hits_layer, [hit.score for hit in outcome.result.hits])


def result_layer(project: QgsProject, role: str,
                 make: Callable[[QgsCoordinateReferenceSystem], QgsVectorLayer],
                 crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    """The existing result layer (re-projected to the map CRS if that changed), else a new one on top."""
    layer = owned_layer(project, role)
    if layer is not None and layer.crs() != crs:
        project.removeMapLayer(layer.id())
        layer = None
    if layer is None:
        layer = make(crs)
        add_on_top(project, layer)
    return layer


def remove_from_map(project: QgsProject) -> None:
    for role in RESULT_ROLES:
        layer = owned_layer(project, role)
        if layer is not None:
            project.removeMapLayer(layer.id())


def frame_hit(canvas, project: QgsProject, rank: int, role: str = "hits") -> None:
    """Show hit `rank` of the hits layer (or the result layer of `role`) with some context, and flash it."""
    layer = owned_layer(project, role)
    if layer is None:
        return
    for feature in layer.getFeatures():
        if feature["rank"] == rank:
            extent = feature.geometry().boundingBox()
            extent.scale(3.0)  # some context around the tile
            canvas.setExtent(extent)
            canvas.refresh()
            # Flash rather than select: a selected polygon is filled opaque and hides the imagery.
            canvas.flashFeatureIds(layer, [feature.id()])
            return


def describe_outcome(outcome: SearchOutcome) -> str:
    result = outcome.result
    what = (f"refined with {outcome.raster_name}" if outcome.feedback is not None
            else f"for a box on {outcome.raster_name}")
    return f"{len(result.hits)} hit(s) {what} in {result.seconds:.1f} s ({_device(result.provider)})."


def _device(provider: str) -> str:
    return "CUDA" if "CUDA" in provider else "CPU"
