"""How the command line fails: its exit statuses, and GDAL's own reason added to an error's one line.

GDAL prints its failures ("ERROR 1: ...") on stderr; while a command runs they are kept instead, and
the last one is added to rsir's message where a GDAL/PROJ failure caused the error.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 3, 130


class GdalMessages(logging.Handler):
    """GDAL's error and warning messages, kept instead of printed ("ERROR 1: ..." on stderr).

    GDAL reports to one handler per process (osgeo's, shared with rasterio where both use one GDAL)
    or per rasterio environment (rasterio logs them); both end here.
    """

    def __init__(self):
        super().__init__(logging.INFO)
        self.failures: list[str] = []

    def gdal_handler(self, err_class: int, err_no: int, message: str) -> None:
        if err_class >= 3:  # CE_Failure, CE_Fatal
            self.failures.append(str(message).strip())

    def emit(self, record: logging.LogRecord) -> None:
        # rasterio logs "GDAL signalled an error: err_no=%r, msg=%r" with those two as arguments.
        if record.getMessage().startswith("GDAL signalled an error") and len(record.args or ()) == 2:
            self.failures.append(str(record.args[1]).strip())


@contextlib.contextmanager
def gdal_messages() -> Iterator[GdalMessages]:
    messages = GdalMessages()
    rasterio_log = logging.getLogger("rasterio._env")
    saved = rasterio_log.propagate, rasterio_log.level
    rasterio_log.addHandler(messages)
    rasterio_log.propagate = False
    rasterio_log.setLevel(logging.INFO)  # rasterio logs GDAL failures at INFO
    gdal = None
    try:
        from osgeo import gdal

        gdal.SetErrorHandler(messages.gdal_handler)  # process-wide: build reads rasters in a worker thread
    except ImportError:  # rasterio without GDAL's own Python bindings: its logging covers it
        gdal = None
    try:
        yield messages
    finally:
        if gdal is not None:
            gdal.SetErrorHandler("CPLDefaultErrorHandler")
        rasterio_log.removeHandler(messages)
        rasterio_log.propagate, rasterio_log.level = saved


def with_gdal_reason(exc: Exception, gdal: GdalMessages) -> str:
    """rsir's message, plus GDAL's last failure message where a GDAL/PROJ failure caused the error and
    GDAL's words are not in the message already (rasterio often replaces PROJ's reason by its own)."""
    text = str(exc)
    caused_by_library = exc.__cause__ is not None or exc.__context__ is not None
    if not gdal.failures or not caused_by_library:
        return text
    reason = (gdal.failures[-1].splitlines() or [""])[0].strip()
    if not reason or _words(reason) in _words(text):
        return text
    return f"{text} (GDAL: {reason})"


def _words(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())
