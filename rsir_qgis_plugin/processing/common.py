"""What both algorithms share: the dependency gate and engine errors as Processing errors."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from qgis.core import QgsMapLayer, QgsProcessingException

from ..core.errors import Cancelled, RsirError
from ..dependencies import describe_missing, missing_requirements
from ..layers import raster_file_path


def require_engine() -> None:
    missing = missing_requirements()
    if missing:
        raise QgsProcessingException(describe_missing(missing) + " Load the rsir plugin to install them.")


@contextmanager
def engine_errors() -> Iterator[None]:
    """Engine errors carry a message for the user; Processing shows QgsProcessingException's text."""
    try:
        yield
    except Cancelled as exc:
        raise QgsProcessingException(f"cancelled: {exc}") from exc
    except RsirError as exc:
        raise QgsProcessingException(str(exc)) from exc


def layer_file(layer: QgsMapLayer | None, parameter: str) -> str:
    path = raster_file_path(layer) if layer is not None else None
    if path is None:
        name = layer.name() if layer is not None else "(none)"
        raise QgsProcessingException(f"{parameter}: '{name}' is not a raster stored in a local file")
    return path
