"""Where a chips folder came from (`rsir export-chips` writes DIR/chips.json beside its class folders), for
the model card of a model trained on it: the labels file it was cut from, by name and sha256.

chips.json is read as untrusted input: at most 1 MB, and only the few fields the card names, as text or
counts; anything else in the file is ignored, and a file that is not such a manifest is simply not one.
"""
from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "chips.json"
FORMAT = "rsir-chips"  # rsir_qgis_plugin/core/chips_folder.py CHIPS_FORMAT
MAX_BYTES = 1 << 20


def chips_source(root: str | Path) -> dict | None:
    """{labels: {file, sha256}, chips: {class: count}} of a chips folder; None for other data."""
    path = Path(root) / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
    counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
    return {"labels": {key: str(labels[key])[:256] for key in ("file", "sha256") if key in labels},
            "chips": {str(k)[:64]: int(v) for k, v in counts.items() if isinstance(v, int)}}
