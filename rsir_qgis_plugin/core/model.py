"""The ONNX model contract: what an embedding model carries in its metadata.

An rsir model is an ONNX graph with one float input (N, bands, S, S) and one output (N, D).
Its `metadata_props` say how to feed it, so the engine never guesses:

    rsir.format_version  "1"
    rsir.name            free text
    rsir.embedding_dim   D
    rsir.input_size      S (pixels, square)
    rsir.tile_size       T, optional: a tile's side in source pixels, read and resampled to S (absent: S)
    rsir.bands           number of input channels
    rsir.mean, rsir.std  JSON lists, one value per band, applied to input scaled to 0-1
    rsir.normalized      JSON bool: the output is already L2-normalised
    rsir.training        JSON object: data, loss, metrics (the model card)

The Deepness QGIS plugin's recognition keys are written too (`model_type` = "Recognition",
`tile_size`, `resolution` in cm/px when known, `standardization_mean`, `standardization_std`),
and a Deepness recognition model without rsir keys is accepted. Deepness' `tile_size` is the input size
(Deepness feeds the tile it cuts as it is), so rsir's footprint has a key of its own: a model trained on
128 px scenes can run at a 160 px input over 128 px tiles, each upsampled, and see them as larger objects.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import safe_json
from .errors import ModelError
from .params import MIN_TILE_PX
from .runtime import CPU, import_onnxruntime, quiet_session_options

FORMAT_VERSION = 1
PREFIX = "rsir."
FLOAT_TENSOR = "tensor(float)"  # onnxruntime's name for the float32 input rsir feeds
FLOAT_OUTPUTS = (FLOAT_TENSOR, "tensor(float16)", "tensor(double)")
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL_PATH = MODELS_DIR / "default.onnx"
# The largest input side accepted. Embedding nets take 64-1024 px; the probe and every batch hold
# bands x S x S float32 values per tile (and the model's activations, many times that), so a 60,000 px
# claim in a model's metadata would ask for tens of GB at the first test tile. 4096 px is 4x the largest
# input of common vision backbones and still fits a 3-band tile in 200 MB.
MAX_INPUT_SIZE = 4096
# The footprint is read from the raster (or its overviews) and resampled to the input: the same bound
# keeps a model's claim from making every tile a read of gigabytes.
MAX_TILE_SIZE = MAX_INPUT_SIZE
PREVIOUS_MODELS_DIR = MODELS_DIR / "previous"  # superseded bundled models, kept for the indexes built with them


@dataclass(frozen=True)
class ModelContract:
    """Everything the engine needs to feed a model and to interpret its output."""

    name: str
    embedding_dim: int
    input_size: int
    bands: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalized: bool = True
    training: dict = field(default_factory=dict)
    resolution_cm: float | None = None
    tile_size: int | None = None  # a default tile's side in source pixels; None: input_size

    @property
    def tile_px(self) -> int:
        """The default tile's side in source pixels (read, then resampled to input_size)."""
        return self.input_size if self.tile_size is None else self.tile_size

    def __post_init__(self):
        if len(self.mean) != self.bands or len(self.std) != self.bands:
            raise ModelError(f"model '{self.name}': mean/std need one value per band ({self.bands})")
        if any(s <= 0 for s in self.std):
            raise ModelError(f"model '{self.name}': std values must be positive")
        if self.embedding_dim < 1 or self.input_size < 1 or self.bands < 1:
            raise ModelError(f"model '{self.name}': embedding_dim, input_size and bands must be positive")
        if self.input_size > MAX_INPUT_SIZE:
            raise ModelError(f"model '{self.name}': input size {self.input_size} px is more than rsir takes "
                             f"({MAX_INPUT_SIZE} px): one tile alone would need "
                             f"{_gigabytes(self.bands * self.input_size ** 2 * 4)} of memory")
        if self.tile_size is not None and not MIN_TILE_PX <= self.tile_size <= MAX_TILE_SIZE:
            raise ModelError(f"model '{self.name}': tile size {self.tile_size} px is outside what rsir takes "
                             f"({MIN_TILE_PX}-{MAX_TILE_SIZE} px of the raster per tile)")

    def to_metadata(self) -> dict[str, str]:
        """The ONNX metadata_props that describe this model (rsir keys and Deepness keys)."""
        props = {
            PREFIX + "format_version": str(FORMAT_VERSION),
            PREFIX + "name": self.name,
            PREFIX + "embedding_dim": str(self.embedding_dim),
            PREFIX + "input_size": str(self.input_size),
            PREFIX + "bands": str(self.bands),
            PREFIX + "mean": json.dumps(list(self.mean)),
            PREFIX + "std": json.dumps(list(self.std)),
            PREFIX + "normalized": json.dumps(self.normalized),
            PREFIX + "training": json.dumps(self.training),
            "model_type": "Recognition",
            "tile_size": str(self.input_size),
            "standardization_mean": json.dumps(list(self.mean)),
            "standardization_std": json.dumps(list(self.std)),
        }
        if self.resolution_cm is not None:
            props["resolution"] = json.dumps(self.resolution_cm)
        if self.tile_size is not None:
            props[PREFIX + "tile_size"] = str(self.tile_size)
        return props

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "model",
                      output_dim: int | None = None) -> ModelContract:
        """Read a contract from metadata_props: rsir keys first, Deepness recognition keys else.

        Deepness models do not state their embedding size: `output_dim` (from the graph) gives it.
        """
        try:
            if PREFIX + "format_version" in props:
                version = int(props[PREFIX + "format_version"])
                if version > FORMAT_VERSION:
                    raise ModelError(f"{source}: rsir model format {version} is newer than this rsir "
                                     f"understands ({FORMAT_VERSION}); update the plugin")
                return cls(
                    name=props.get(PREFIX + "name", Path(source).stem),
                    embedding_dim=int(props[PREFIX + "embedding_dim"]),
                    input_size=int(props[PREFIX + "input_size"]),
                    bands=int(props[PREFIX + "bands"]),
                    mean=tuple(float(v) for v in safe_json.loads(props[PREFIX + "mean"])),
                    std=tuple(float(v) for v in safe_json.loads(props[PREFIX + "std"])),
                    normalized=bool(safe_json.loads(props.get(PREFIX + "normalized", "false"))),
                    training=safe_json.loads(props.get(PREFIX + "training", "{}")),
                    resolution_cm=_optional_float(props.get("resolution")),
                    tile_size=_optional_int(props.get(PREFIX + "tile_size")),
                )
            if props.get("model_type", "").strip('"').lower() == "recognition":
                if output_dim is None:
                    raise ModelError(f"{source}: Deepness recognition model with no fixed output size")
                mean = tuple(float(v) for v in safe_json.loads(props.get("standardization_mean",
                                                                          "[0, 0, 0]")))
                std = tuple(float(v) for v in safe_json.loads(props.get("standardization_std", "[1, 1, 1]")))
                return cls(
                    name=Path(source).stem,
                    embedding_dim=output_dim,
                    input_size=int(safe_json.loads(props["tile_size"])),
                    bands=len(mean),
                    mean=mean,
                    std=std,
                    normalized=False,
                    training={"source": "Deepness recognition model"},
                    resolution_cm=_optional_float(props.get("resolution")),
                )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"{source}: malformed model metadata ({exc!r})") from exc
        except ModelError as exc:  # the contract's own checks name the model, not its file
            text = str(exc)
            raise (exc if text.startswith(f"{source}: ") else ModelError(f"{source}: {text}")) from None
        raise ModelError(f"{source}: not an rsir or Deepness recognition model "
                         "(its ONNX metadata has neither 'rsir.format_version' nor model_type=Recognition)")


@dataclass(frozen=True)
class ModelInfo:
    """A model file on disk with its contract and identity."""

    path: Path
    contract: ModelContract
    sha256: str
    input_name: str
    output_name: str
    fixed_batch: int | None  # batch size the graph insists on, None when dynamic

    @property
    def identity(self) -> dict:
        """What an index records to refuse being searched with another model."""
        c = self.contract
        return {"name": c.name, "sha256": self.sha256, "embedding_dim": c.embedding_dim,
                "input_size": c.input_size, "bands": c.bands}

    def describe(self) -> str:
        """Two short lines for a user: what the model takes and gives, and its numeric metrics."""
        c = self.contract
        tiles = f" (tiles of {c.tile_px} px resampled to it)" if c.tile_px != c.input_size else ""
        text = (f"{c.name}: {c.bands} bands, {c.input_size} px input{tiles}, {c.embedding_dim}-d embedding"
                f"{', L2-normalised' if c.normalized else ''}")
        metrics = c.training.get("metrics") if isinstance(c.training, dict) else None
        numbers = {k: v for k, v in (metrics or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            text += "\nmetrics: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items())
        return text

    def card(self) -> str:
        """The whole model card (training data, loss, metrics and their protocols), as indented JSON."""
        return json.dumps(self.contract.training, indent=2)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundled_model_path(path: str | Path) -> Path:
    """`path` as given; a bare name of a bundled model ('default-int8') is that model's file."""
    path = Path(path)
    bundled = MODELS_DIR / f"{path.name}.onnx"
    if not path.suffix and path.parent == Path(".") and not path.exists() and bundled.is_file():
        return bundled
    return path


def find_model(sha256: str, hint: str | Path | None) -> ModelInfo | None:
    """The model file with this identity: at `hint` (where an index says it was), else a bundled one,
    current or previous (an index built with a superseded default keeps its model after an upgrade).

    Candidates are matched by hash before one is opened: an onnxruntime session per bundled file would
    cost a second or more for each index of an older model.
    """
    candidates = (([Path(hint)] if hint else []) + sorted(MODELS_DIR.glob("*.onnx"))
                  + sorted(PREVIOUS_MODELS_DIR.glob("*.onnx")))
    for candidate in candidates:
        if candidate.is_file() and _identity_of(candidate) == sha256:
            return read_model(candidate)
    return None


def _identity_of(path: Path) -> str | None:
    """A model file's identity (model_sha256), or None where its external data is refused or missing
    (read_model would say why; here it is only not the model looked for)."""
    path = path.resolve()
    stat = path.stat()
    try:
        externals = _external_files(str(path), stat.st_size, stat.st_mtime_ns)
    except ModelError:
        return None
    versions = tuple((name, *_file_version(path.parent / name)) for name in externals)
    return _cached_identity(str(path), stat.st_size, stat.st_mtime_ns, versions)


@functools.lru_cache(maxsize=16)
def _cached_identity(path_text: str, size: int, mtime_ns: int, externals: tuple) -> str:
    """Kept per file version (as _read_model_version): hashing 20 MB costs about 50 ms a file."""
    return model_sha256(Path(path_text), tuple(name for name, *_ in externals))


def read_model(path: str | Path | None = None) -> ModelInfo:
    """Open an ONNX model's metadata and check it against the contract (None: the bundled default).

    Results are kept per file version (path, size, mtime, and those of its external-data files): each
    query reads the model's identity, and hashing and parsing a large model every time would cost a
    user noticeable latency.
    """
    path = bundled_model_path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.is_file():
        hint = " (the bundled default model is missing: reinstall the plugin)" if path == DEFAULT_MODEL_PATH else ""
        raise ModelError(f"{path}: model file not found{hint}")
    path = path.resolve()
    stat = path.stat()
    externals = _external_files(str(path), stat.st_size, stat.st_mtime_ns)
    versions = tuple((name, *_file_version(path.parent / name)) for name in externals)
    return _read_model_version(str(path), stat.st_size, stat.st_mtime_ns, versions)


def external_data_files(model: ModelInfo) -> tuple[Path, ...]:
    """The files beside the model that hold its external-data weights (none for most models)."""
    stat = model.path.stat()
    return tuple(model.path.parent / name
                 for name in _external_files(str(model.path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _external_files(path_text: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    """The external-data locations the model names, each checked to be a regular file in its folder.

    A location is refused outside the model's folder: a model file must not make rsir read (hash,
    and onnxruntime load) any file of the user's, nor hang on a device or a FIFO.
    """
    from .onnx_external import external_data_locations

    path = Path(path_text)
    try:
        names = external_data_locations(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from exc
    folder = path.parent
    for name in names:
        target = Path(os.path.normpath(folder / name))
        if Path(name).is_absolute() or folder not in target.parents:
            raise ModelError(f"{path}: names external data '{name}' outside its folder; rsir reads a "
                             "model's weights only from files beside it")
        if not target.is_file():
            raise ModelError(f"{path}: its external data file '{name}' is missing or not a regular file "
                             f"(it must lie beside the model, in {folder})")
    return names


def _file_version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def model_sha256(path: Path, externals: tuple[str, ...]) -> str:
    """The model's identity: the file's sha256, or with external data, a hash over it and every data
    file (name and sha256), so changed weights beside an unchanged .onnx make another model."""
    own = file_sha256(path)
    if not externals:
        return own  # as before external data was covered: indexes built earlier keep their identity
    digest = hashlib.sha256(own.encode())
    for name in sorted(externals):
        digest.update(f"\0{name}\0{file_sha256(path.parent / name)}".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _read_model_version(path_text: str, size: int, mtime_ns: int, externals: tuple) -> ModelInfo:
    path = Path(path_text)
    ort = import_onnxruntime()
    try:
        session = ort.InferenceSession(str(path), quiet_session_options(ort), providers=[CPU])
    except Exception as exc:  # onnxruntime raises its own exception types for every parse failure
        raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise ModelError(f"{path}: an embedding model needs one input and one output, "
                         f"found {len(inputs)} inputs and {len(outputs)} outputs")
    in_shape, out_shape = inputs[0].shape, outputs[0].shape
    if len(in_shape) != 4 or len(out_shape) != 2:
        raise ModelError(f"{path}: input must be (N, C, H, W) and output (N, D); "
                         f"found input {in_shape} and output {out_shape}")
    if inputs[0].type != FLOAT_TENSOR:
        raise ModelError(f"{path}: input is {_element_type(inputs[0].type)}, but rsir feeds float32 tiles "
                         "normalised by the metadata's mean/std; export the model with a float32 input")
    if outputs[0].type not in FLOAT_OUTPUTS:
        raise ModelError(f"{path}: output is {_element_type(outputs[0].type)}; "
                         "an embedding must be floating point")
    out_dim = out_shape[1] if isinstance(out_shape[1], int) else None
    contract = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, str(path), out_dim)
    if out_dim is not None and out_dim != contract.embedding_dim:
        raise ModelError(f"{path}: metadata says {contract.embedding_dim}-d embeddings, graph outputs {out_dim}")
    if isinstance(in_shape[1], int) and in_shape[1] != contract.bands:
        raise ModelError(f"{path}: metadata says {contract.bands} bands, graph input has {in_shape[1]} channels")
    for axis in (2, 3):
        if isinstance(in_shape[axis], int) and in_shape[axis] != contract.input_size:
            raise ModelError(f"{path}: metadata says {contract.input_size} px input, graph input is {in_shape}")
    fixed_batch = in_shape[0] if isinstance(in_shape[0], int) else None
    return ModelInfo(path=path.resolve(), contract=contract,
                     sha256=model_sha256(path, tuple(name for name, *_ in externals)),
                     input_name=inputs[0].name, output_name=outputs[0].name, fixed_batch=fixed_batch)


def _element_type(onnx_type: str) -> str:
    """'tensor(uint8)' -> 'uint8', 'tensor(float)' -> 'float32'."""
    name = onnx_type[len("tensor("):-1] if onnx_type.startswith("tensor(") else onnx_type
    return {"float": "float32", "double": "float64"}.get(name, name)


def _optional_int(text: str | None) -> int | None:
    """An integer metadata value ('128'); absent is None, anything else (1.5, 'big', true) is malformed."""
    if text is None:
        return None
    value = safe_json.loads(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{text[:40]!r} is not a whole number of pixels")
    return value


def _optional_float(text: str | None) -> float | None:
    if text in (None, "", "null"):
        return None
    return float(safe_json.loads(text))


def _gigabytes(size: int) -> str:
    return f"{size / 2 ** 30:.1f} GB"
