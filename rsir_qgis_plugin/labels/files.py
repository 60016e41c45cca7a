"""The labels of a GeoPackage (layer `rsir_labels`): opened as the labels layer, written from label
features, and the folder that relative raster paths in it start from."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..core.label_records import LABEL_FIELD, RASTER_FIELD
from ..core.label_records import LABELS_LAYER as GPKG_LAYER_NAME
from .layer import LABELS_LAYER_NAME, has_label_fields, label_fields

__all__ = ["GPKG_LAYER_NAME", "labels_dir", "open_labels_file", "write_label_layer"]


def open_labels_file(path: str | Path) -> QgsVectorLayer | None:
    """The `rsir_labels` layer of a GeoPackage (or its only layer), as `rsir labels`; None if it has none."""
    for uri in (f"{path}|layername={GPKG_LAYER_NAME}", str(path)):
        layer = QgsVectorLayer(uri, LABELS_LAYER_NAME, "ogr")
        if has_label_fields(layer):
            return layer
    return None


def labels_dir(layer: QgsVectorLayer) -> Path | None:
    """The folder of a file-backed labels layer (relative raster paths are relative to it), else None."""
    if layer.providerType() != "ogr":
        return None
    path = Path(layer.source().split("|")[0])
    return path.parent if path.is_file() else None


def write_label_layer(features: Sequence[QgsFeature], crs: QgsCoordinateReferenceSystem, path: str | Path,
                      context: QgsCoordinateTransformContext | None = None) -> Path:
    """Write the labels layer's features, as the user left them, to the `rsir_labels` layer of a
    GeoPackage; other layers of an existing file (saved hits, say) are kept. Values only: safe in a
    worker thread. Raises RsirError saying why.

    Not core.labels_io.write_labels, which writes the engine's boxes into a new file replaced
    atomically: this file may be the live `rsir labels` layer, which QGIS holds open, so the layer is
    rewritten in place, and features the engine would leave out (a label being typed) are kept."""
    from ..core.errors import RsirError

    path = Path(path)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = GPKG_LAYER_NAME
    options.fileEncoding = "UTF-8"
    on_existing = QgsVectorFileWriter.ActionOnExistingFile
    options.actionOnExistingFile = (on_existing.CreateOrOverwriteLayer if path.exists()
                                    else on_existing.CreateOrOverwriteFile)
    writer = QgsVectorFileWriter.create(str(path), label_fields(), QgsWkbTypes.Type.Polygon, crs,
                                        context or QgsCoordinateTransformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
        message = writer.errorMessage()
        del writer
        raise RsirError(f"cannot write {path}: {message}")
    fields = label_fields()
    out = []
    for source in features:
        feature = QgsFeature(fields)
        feature.setGeometry(source.geometry())
        feature.setAttributes([source[RASTER_FIELD], source[LABEL_FIELD]])
        out.append(feature)
    ok = writer.addFeatures(out)
    message = writer.errorMessage()
    del writer  # closes the file
    if not ok:
        raise RsirError(f"cannot write the labels into {path}: {message}")
    return path
