"""Relevance-feedback labels as a QGIS layer: the `rsir labels` polygon layer, and its conversion to
and from the engine's `Feedback` (core/feedback.py).

Each feature is one labelled box: its polygon (in the layer's CRS), `raster` (the indexed raster
the box lies on) and `label` ('positive' or 'negative'). The layer is an ordinary vector layer:
the user can edit it, save it as a GeoPackage (layer `rsir_labels`) and load it again in a later
QGIS session, and whatever its features are when a search is refined is what the engine gets.

    layer.py     the layer: its fields and label values, creation, style, finding it in a project
    edit.py      labels added, changed, removed, found and counted in the layer
    convert.py   hits and drawn boxes -> label geometries; label features <-> the engine's Feedback
    files.py     the labels of a GeoPackage: opened as the layer, written from features

No widgets here (the dock, the search controller and Processing can all use it). Functions taking
features or footprints only work on values, so they may run in a QgsTask's worker thread; functions
taking a QgsVectorLayer or a project run on the UI thread.
"""
