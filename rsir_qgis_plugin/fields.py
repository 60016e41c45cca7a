"""The type to give a QgsField on every supported QGIS: QMetaType.Type from QGIS 3.38 on, QVariant.Type before.

QGIS 3.38 deprecated `QgsField(name, QVariant.X)` for `QgsField(name, QMetaType.Type.X)`, which QGIS 3.22
rejects; PyQt6 (QGIS 4) has no QVariant type enum at all.
"""
from __future__ import annotations

from qgis.core import Qgis
from qgis.PyQt.QtCore import QMetaType, QVariant

# The first QGIS release whose QgsField takes a QMetaType.Type.
QMETATYPE_FIELDS_SINCE = 33800


def field_type(kind: str):
    """The QgsField type for kind "int", "double" or "string" on the running QGIS."""
    types = _metatype_types() if Qgis.QGIS_VERSION_INT >= QMETATYPE_FIELDS_SINCE else _qvariant_types()
    return types[kind]


def _metatype_types() -> dict:
    return {"int": QMetaType.Type.Int, "double": QMetaType.Type.Double, "string": QMetaType.Type.QString}


def _qvariant_types() -> dict:
    # Runs only on QGIS < 3.38, always PyQt5. QGIS 4 (PyQt6, whose QVariant has no type enum) is newer,
    # so this never runs there: tests/qgis/test_qt6_names.py exempts the QVariant names in this one function.
    return {"int": QVariant.Type.Int, "double": QVariant.Type.Double, "string": QVariant.Type.String}
