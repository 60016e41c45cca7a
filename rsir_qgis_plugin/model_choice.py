"""How the build dialog (and any other front end) describes models and devices to a user.

Plain Python, no Qt: the bundled models with their headline quality, speed and size, a model's
facts as (label, value) rows from its card, and the inference devices rsir can use.
"""
from __future__ import annotations

from pathlib import Path

# The onnxruntime execution providers rsir runs on; others that a build lists (Azure, ...) are not shown.
USABLE_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
# Model-card metrics shown as a table: label ({data}: the evaluation set) and the keys of its values,
# looked up as "<data>_<key>" and then as "<key>".
METRICS = (
    ("{data} test mAP", ("test_map",)),
    ("P@10", ("test_p@10",)),
    ("Turned 90° / 45°", ("test_map_queries_rotated_90", "test_map_queries_rotated_45")),  # queries' mAP
)
# Card metric: images/s against the bundled default on the same CPU (export.card --metric, export.throughput).
SPEEDUP_KEY = "cpu_speedup_vs_default"


def model_facts(info) -> list[tuple[str, str]]:
    """A model's input, embedding and headline metrics as (label, value) rows."""
    c = info.contract
    facts = [("Input", f"{c.input_size} px, {c.bands} band{'s' if c.bands != 1 else ''}"),
             ("Embedding", f"{c.embedding_dim}-d")]
    metrics = c.training.get("metrics") if isinstance(c.training, dict) else None
    metrics = metrics if isinstance(metrics, dict) else {}
    # The evaluation set is the prefix of "<data>_test_map" that names the most of METRICS' keys.
    prefixes = {k[:-len("_test_map")] for k in metrics if k.endswith("_test_map")} | {""}
    data = max(sorted(prefixes),
               key=lambda p: sum(f"{p}_{key}" in metrics for _, keys in METRICS for key in keys))
    for label, keys in METRICS:
        values = [metrics.get(f"{data}_{key}", metrics.get(key)) for key in keys]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            facts.append((label.format(data=data.upper()).strip(), " / ".join(f"{v:.3f}" for v in values)))
    if len(facts) == 2:
        facts.append(("Metrics", "none in the model card"))
    speed = speed_text(info)
    if speed:
        facts.append(("CPU speed", speed))
    return facts


def bundled_models() -> list[Path]:
    """The models shipped in the plugin's models/ folder: the default first, then the others by name."""
    from .core.model import DEFAULT_MODEL_PATH, MODELS_DIR

    others = sorted(p for p in MODELS_DIR.glob("*.onnx") if p != DEFAULT_MODEL_PATH)
    return ([DEFAULT_MODEL_PATH] if DEFAULT_MODEL_PATH.is_file() else []) + others


def speed_text(info) -> str:
    """CPU speed against the bundled default, from the model card ('' when the card does not say)."""
    metrics = info.contract.training.get("metrics") if isinstance(info.contract.training, dict) else None
    value = (metrics or {}).get(SPEEDUP_KEY)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.1f}x the default's speed on CPU"
    return ""


def bundled_label(path: Path, info) -> str:
    """One line for the bundled-model list: name, headline quality and speed, file size."""
    from .core.model import DEFAULT_MODEL_PATH

    facts = dict(model_facts(info))
    quality = next((f"{label} {value}" for label, value in facts.items() if label.endswith("test mAP")), "")
    speed = speed_text(info) or ("CPU speed 1x (reference)" if path == DEFAULT_MODEL_PATH else "")
    parts = [part for part in (quality, speed, f"{path.stat().st_size / 1e6:.0f} MB") if part]
    return f"{path.name} — " + ", ".join(parts)


def read_bundled(paths: list[Path]) -> list[tuple[Path, str]]:
    """(path, label) of each bundled model, read in a worker thread; a model that fails says why."""
    from .core.errors import RsirError
    from .core.model import read_model

    labels = []
    for path in paths:
        try:
            labels.append((path, bundled_label(path, read_model(path))))
        except RsirError as exc:
            labels.append((path, f"{path.name} — not usable: {exc}"))
    return labels


def describe_devices(report) -> str:
    """The devices line, listing only the execution providers rsir can use."""
    providers = [p for p in getattr(report, "providers", ()) if p in USABLE_PROVIDERS]
    version = getattr(report, "onnxruntime_version", "?")
    text = f"onnxruntime {version}: {', '.join(providers) or 'no usable provider'}"
    if "CUDAExecutionProvider" not in providers:
        text += " (no CUDA here)"
    return text


def bundled_index(bundled: list[Path], saved: str) -> int:
    """Which bundled model a saved model path names: 0 (the default) for none, -1 for a file of the user's.
    A bundled model saved from a plugin installed elsewhere (another profile, an upgrade) is found by name."""
    if not saved:
        return 0
    path = Path(saved)
    for index, candidate in enumerate(bundled):
        moved = not path.exists() and (path.name, path.parent.name) == (candidate.name, candidate.parent.name)
        if (path.is_file() and path.resolve() == candidate) or moved:
            return index
    return -1
