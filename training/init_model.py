"""What `training.fit --init` starts from: a training checkpoint, or an rsir ONNX model (an index's model,
a bundled one) rebuilt on the fly by training.from_onnx, so the loop "index model -> fine-tune -> export ->
re-index" needs no separate conversion step.

The starting network also sets the run's architecture: its backbone, head, pooling, projection, input
size, bands and tile size become the run's defaults (below --config and the command line, which may still
name them: a value that differs from the network's is refused by fit, naming it).
"""
from __future__ import annotations

from pathlib import Path

from . import checkpoint

ONNX_SUFFIX = ".onnx"


def read_init(path: str | Path) -> dict:
    """{"meta", "state_dict"} of a checkpoint, or of an ONNX model rebuilt and parity-checked."""
    path = Path(path)
    if path.suffix.lower() == ONNX_SUFFIX:
        from .from_onnx import rebuild

        if not path.is_file():
            raise SystemExit(f"{path}: --init model not found")
        state, cosine = rebuild(path)
        print(f"--init {path}: rebuilt from ONNX, min cosine against onnxruntime {cosine:.6f}", flush=True)
        return state
    return checkpoint.read(path)


def init_meta(path: str | Path) -> dict:
    """The meta of what --init names (an ONNX model's from its metadata alone)."""
    path = Path(path)
    if path.suffix.lower() == ONNX_SUFFIX:
        from .from_onnx import read_meta

        if not path.is_file():
            raise SystemExit(f"{path}: --init model not found")
        return read_meta(path)
    return checkpoint.read(path)["meta"]


def architecture_defaults(meta: dict) -> dict:
    """FitConfig values (field: value) that rebuild the network `meta` describes."""
    options = meta.get("head_options") or {}
    defaults = {"backbone": meta["backbone"], "head": meta["head"], "pooling": meta["pooling"],
                "gem_p": meta.get("gem_p", 3.0), "input_size": meta["input_size"],
                "embedding_dim": meta["embedding_dim"] if meta.get("projection", True) else 0,
                "tile_size": meta.get("tile_size", 0)}
    if "reduction" in options:
        defaults["attention_reduction"] = options["reduction"]
    if meta.get("band_indices"):
        defaults["bands"] = tuple(meta["band_indices"])
    return defaults
