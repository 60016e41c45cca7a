"""Raster paths that come from files (a labels file's `raster` field) rather than from the user's own
command line: they must not make GDAL reach the network.

GDAL opens `/vsicurl/http://...`, `/vsis3/...`, URLs and connection strings such as `WMS:http://...`
as readily as a local path, and a local VRT can name such a source (also through another VRT), so a
labels file someone sent could make rsir send requests to an address of their choosing (a tracking
beacon, or a service on the user's own network). GDAL has no switch that turns all of its network
access off (CPL_VSIL_CURL_ALLOWED_EXTENSIONS restricts the /vsicurl/ family but not the WMS, WMTS,
WCS or HTTP drivers, which fetch through CPLHTTPFetch), and the pixels are read later, by the search,
outside any environment this module could set. So the paths themselves are checked before anything
opens them: the path as written, and the sources a VRT names, recursively. A raster refused here is
left out with the reason, like any other unusable label.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# GDAL's virtual file systems that reach the network (each also has a _streaming variant, matched too).
NETWORK_FILE_SYSTEMS = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
                        "/vsihdfs", "/vsiwebhdfs")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)  # http://, https://, ftp://, s3:// anywhere
# Connection strings of GDAL's network drivers ("WMS:...", "EEDA:projects/..."); local subdatasets such as
# NETCDF:"a.nc":var stay allowed.
NETWORK_DRIVERS = ("wms", "wmts", "wcs", "eeda", "eedai", "daas", "plscenes", "ngw", "ogcapi", "stacta",
                   "stacit", "http", "https", "ftp")
_CONNECTION = re.compile(rf"^\s*({'|'.join(NETWORK_DRIVERS)}):", re.IGNORECASE)
# Local XML files that GDAL's drivers read as a description of a network service.
SERVICE_ROOTS = {"gdal_wms", "gdal_wmts", "wms_capabilities", "wmt_ms_capabilities", "capabilities",
                 "wcs_gdal", "gdal_wcs"}
# Where a VRT names its sources (simple, complex, kernel and mask sources, overviews; warped VRTs).
SOURCE_TAGS = {"sourcefilename", "sourcedataset"}
MAX_DEPTH = 8  # VRTs naming VRTs: deeper is refused rather than followed
MAX_XML_BYTES = 64 << 20


def network_reason(path: str) -> str | None:
    """Why GDAL would take `path` to the network (by its text alone), or None for a local path."""
    lowered = path.strip().lower()
    if any(prefix in lowered for prefix in NETWORK_FILE_SYSTEMS):
        return "names a network file system (/vsicurl/, /vsis3/, ...)"
    if _URL.search(lowered):
        return "is a URL"
    if _CONNECTION.match(lowered):
        return "is a connection string of a GDAL network driver, not a file"
    return None


def local_raster_reason(path: str | Path) -> str | None:
    """Why opening the local file `path` would reach the network (a VRT with such a source, at any depth,
    or a network service description), or None. Files that cannot be read are left for the raster
    reader to report."""
    return _file_reason(Path(path), depth=0, seen=set())


def _file_reason(path: Path, depth: int, seen: set[str]) -> str | None:
    real = os.path.realpath(path)
    if real in seen or not os.path.isfile(real):
        return None
    seen.add(real)
    try:
        root = _xml_root(Path(real))
    except ValueError:  # GDAL's own XML reader is more lenient: what Python cannot check is refused
        return "is an XML file that cannot be parsed, so the sources it names cannot be checked"
    if root is None:
        return None  # not XML: a GeoTIFF, JPEG2000 ... names no other file that GDAL would fetch
    tag = root.tag.lower()  # GDAL matches XML names without regard to case
    if tag in SERVICE_ROOTS:
        return f"is a description of a network service ({root.tag})"
    if tag != "vrtdataset":
        return None
    if depth >= MAX_DEPTH:
        return f"nests VRTs more than {MAX_DEPTH} deep"
    for element in root.iter():
        if not isinstance(element.tag, str) or element.tag.lower() not in SOURCE_TAGS:
            continue
        source = (element.text or "").strip()
        if not source:
            continue
        reason = network_reason(source)
        attributes = {key.lower(): value.strip() for key, value in element.attrib.items()}
        # relativeToVRT="1": beside the VRT; otherwise as written (relative to the working directory)
        local = Path(real).parent / source if attributes.get("relativetovrt") == "1" else Path(source)
        reason = reason or _file_reason(local, depth + 1, seen)
        if reason:
            return f"is a VRT whose source {source[:120]!r} {reason}"
    return None


def _xml_root(path: Path):
    """The root element of an XML file; None for a file that is not XML or cannot be read; ValueError for
    a file that starts like XML but does not parse (or is over MAX_XML_BYTES)."""
    import xml.etree.ElementTree as ElementTree

    try:
        with open(path, "rb") as handle:
            head = handle.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n")
            if not head.startswith(b"<"):
                return None
            handle.seek(0)
            data = handle.read(MAX_XML_BYTES)
    except OSError:
        return None
    try:  # expat fetches no external entity and caps entity expansion (billion laughs)
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise ValueError(str(exc)) from None
