"""How the build dialog (and any other front end) describes models and devices to a user.

Plain Python, no Qt: the bundled models with their headline quality, speed and size, a model's
facts as (label, value) rows from its card, and the inference devices rsir can use.
"""
from __future__ import annotations

from pathlib import Path

from .core.runtime import CUDA, USABLE_PROVIDERS

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
    tiles = f" from {c.tile_px} px tiles" if c.tile_px != c.input_size else ""
    facts = [("Input", f"{c.input_size} px{tiles}, {c.bands} band{'s' if c.bands != 1 else ''}"),
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


def speed_short(info) -> str:
    """'CPU speed 2.1x' (against the bundled default), '' when the card does not say."""
    text = speed_text(info)
    return f"CPU speed {text.split('x ')[0]}x" if text else ""


def bundled_label(path: Path, info) -> str:
    """One short line for the bundled-model list: name, headline quality, speed against the default
    (1x for the default itself), file size."""
    from .core.model import DEFAULT_MODEL_PATH

    facts = dict(model_facts(info))
    quality = next((f"{label.replace(' test ', ' ')} {value}" for label, value in facts.items()
                    if label.endswith("test mAP")), "")
    speed = speed_short(info) or ("CPU speed 1x" if path == DEFAULT_MODEL_PATH else "")
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
    if CUDA not in providers:
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


# What each figure of a model card means, by the key's suffix after "<data>_" (readable_card).
FIGURE_MEANINGS = (
    ("test_map", "mAP", "mean average precision: how near the top the test images of the query's class "
                        "rank (1 = all of them first)"),
    ("test_p@10", "P@10", "share of the 10 best hits that are of the query's class"),
    ("test_anmrr", "ANMRR", "average normalised modified retrieval rank (MPEG-7): 0 is perfect, 1 is worst"),
    ("test_map_queries_rotated_90", "mAP, queries turned 90°", "mAP with every query image rotated by 90° "
                                                               "(how well it matches across orientations)"),
    ("test_map_queries_rotated_45", "mAP, queries turned 45°", "the same with a 45° rotation"),
    ("test_vs_train_map", "mAP among the training images", "test images querying the training images"),
)
# Evaluation sets by the prefix of their metric keys.
DATASETS = {"aid": "AID aerial scenes", "ucm": "UC Merced land use", "ucmerced": "UC Merced land use"}


def _input_text(contract) -> str:
    """'128 px tiles', or for a model with a footprint '128 px tiles, each resampled to 160 px'."""
    if contract.tile_px == contract.input_size:
        return f"{contract.input_size} px tiles"
    return f"{contract.tile_px} px tiles, each resampled to {contract.input_size} px"


def readable_card(info) -> str:
    """A model card for a user: name, what it takes, what it was trained on, its figures with their
    meaning and its licence (the raw JSON stays available for Details)."""
    c = info.contract
    card = c.training if isinstance(c.training, dict) else {}
    lines = [c.name, "",
             f"Input: {_input_text(c)}, {c.bands} band{'s' if c.bands != 1 else ''}; "
             f"embedding: {c.embedding_dim} numbers per tile."]
    backbone = (card.get("config") or {}).get("backbone") if isinstance(card.get("config"), dict) else None
    if backbone:
        lines.append(f"Network: {backbone}.")
    lines += ["", "Trained on", "  " + _training_text(card)]
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    figures = _figures(metrics)
    if figures:
        lines += ["", "Figures (each test image queries the other test images)"]
        lines += figures
    for key, title in (("licence", "Licence"), ("source", "Provenance")):
        if isinstance(card.get(key), str) and card[key]:
            lines += ["", title, "  " + card[key]]
    if not card:
        lines += ["", "This model carries no model card."]
    return "\n".join(lines)


def _training_text(card: dict) -> str:
    data = card.get("data")
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return "not stated in the model card"
    root = str(data.get("root", "")).rstrip("/").split("/")[-1]
    parts = [_dataset_name(root) if root else "a labelled scene dataset"]
    classes = data.get("classes")
    if isinstance(classes, list) and classes:
        parts.append(f"{len(classes)} scene classes")
    if isinstance(data.get("n_train"), int):
        parts.append(f"{data['n_train']} training and {data.get('n_test', '?')} test images")
    text = ", ".join(parts)
    loss, epochs = card.get("loss"), card.get("epochs")
    loss_name = loss.get("name") if isinstance(loss, dict) else loss
    if loss_name:
        text += f"; loss {loss_name}" + (f", {epochs} epochs" if epochs else "")
    return text + "."


def _dataset_name(key: str) -> str:
    letters = "".join(ch for ch in key.lower() if ch.isalpha())
    name = DATASETS.get(letters)
    return f"{name} ({key})" if name else key


def _figures(metrics: dict) -> list[str]:
    """Each evaluation set's figures ('    mAP  0.905'), then what each figure shown means, once."""
    lines, shown = [], []
    sets = sorted({k[:-len(suffix)].rstrip("_") for k in metrics for suffix, _, _ in FIGURE_MEANINGS
                   if k.endswith(suffix)})
    for data in sets:
        rows = []
        for suffix, label, meaning in FIGURE_MEANINGS:
            value = metrics.get(f"{data}_{suffix}" if data else suffix)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append(f"    {label}: {value:.3f}")
                shown += [(label, meaning)] if (label, meaning) not in shown else []
        if rows:
            lines += [f"  on {_dataset_name(data) if data else 'its test set'}"] + rows
    speedup = metrics.get(SPEEDUP_KEY)
    if isinstance(speedup, (int, float)) and not isinstance(speedup, bool):
        lines.append(f"  CPU speed: {speedup:.1f}x the bundled default's")
    if shown:
        lines += ["", "What the figures mean"] + [f"  {label}: {meaning}" for label, meaning in shown]
    return lines
