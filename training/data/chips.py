"""Where a chips folder came from (`rsir export-chips` writes DIR/chips.json beside its class folders), for
the model card of a model trained on it: the labels file it was cut from, by name and sha256.

chips.json is read as untrusted input by the engine's own reader (rsir_qgis_plugin/core/chips_folder.py:
size-limited, a JSON object), and only the few fields the card names are kept, as short text or counts;
a file that is not such a manifest is simply not one.
"""
from __future__ import annotations

from pathlib import Path


def chips_source(root: str | Path) -> dict | None:
    """{labels: {file, sha256}, chips: {class: count}} of a chips folder; None for other data."""
    from rsir_qgis_plugin.core.chips_folder import CHIPS_FORMAT, MANIFEST_NAME, read_manifest
    from rsir_qgis_plugin.core.errors import RsirError

    path = Path(root) / MANIFEST_NAME
    try:
        if not path.is_file():
            return None
        data = read_manifest(path)
    except (OSError, RsirError):
        return None
    if data.get("format") != CHIPS_FORMAT:
        return None
    labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
    counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
    return {"labels": {key: str(labels[key])[:256] for key in ("file", "sha256") if key in labels},
            "chips": {str(k)[:64]: int(v) for k, v in counts.items() if isinstance(v, int)}}
