"""Turning uint8 tiles into L2-normalised embeddings with onnxruntime, on CUDA when it really works."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .errors import MissingDependencyError, ModelError, RuntimeUnavailableError
from .model import ModelInfo

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(["onnxruntime"], f"import failed: {exc}; pip install onnxruntime "
                                                      "(or onnxruntime-gpu)") from exc
    # Wheels of onnxruntime-gpu find CUDA/cuDNN installed from pip only after this call.
    if hasattr(onnxruntime, "preload_dlls"):
        try:
            onnxruntime.preload_dlls()
        except Exception:  # best effort: the session below reports the real failure
            pass
    return onnxruntime


@dataclass(frozen=True)
class DeviceReport:
    """What inference devices this machine offers, for a user to see before choosing."""

    providers: tuple[str, ...]
    cuda_listed: bool
    onnxruntime_version: str

    def describe(self) -> str:
        cuda = "CUDA available" if self.cuda_listed else "no CUDA (onnxruntime CPU build or no GPU)"
        return f"onnxruntime {self.onnxruntime_version}: {cuda}; providers {', '.join(self.providers)}"


def available_devices() -> DeviceReport:
    ort = _onnxruntime()
    providers = tuple(ort.get_available_providers())
    return DeviceReport(providers=providers, cuda_listed=CUDA in providers, onnxruntime_version=ort.__version__)


class Embedder:
    """An inference session for one model: feeds it per the contract, returns unit vectors.

    `provider` says where it runs; `provider_note` explains a fallback from CUDA to CPU, so a
    failed CUDA load is never silent.
    """

    def __init__(self, model: ModelInfo, device: str = "auto", threads: int | None = None):
        ort = _onnxruntime()
        self.model = model
        contract = model.contract
        self.input_size = contract.input_size
        self.embedding_dim = contract.embedding_dim
        std = np.asarray(contract.std, dtype=np.float32)
        mean = np.asarray(contract.mean, dtype=np.float32)
        # (x / 255 - mean) / std as one multiply-add per pixel.
        self._scale = (1.0 / (255.0 * std))[None, :, None, None]
        self._shift = (-mean / std)[None, :, None, None]
        self.provider_note = ""
        self._session = self._make_session(ort, device, threads)
        self.provider = self._session.get_providers()[0]

    def _make_session(self, ort, device: str, threads: int | None):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        path = str(self.model.path)
        want_cuda = device in ("auto", "cuda")
        cuda_listed = CUDA in ort.get_available_providers()
        if device == "cuda" and not cuda_listed:
            raise RuntimeUnavailableError(
                f"CUDA was asked for but onnxruntime {ort.__version__} offers only "
                f"{', '.join(ort.get_available_providers())}: install onnxruntime-gpu (and not onnxruntime)")
        if want_cuda and cuda_listed:
            try:
                session = ort.InferenceSession(path, options, providers=[CUDA, CPU])
            except Exception as exc:
                session, failure = None, str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            else:
                failure = "" if session.get_providers()[0] == CUDA else "CUDA provider did not load"
            if not failure:
                return session
            if device == "cuda":
                raise RuntimeUnavailableError(f"CUDA could not be used for {path}: {failure} "
                                              "(check the CUDA and cuDNN versions onnxruntime-gpu needs)")
            self.provider_note = f"CUDA could not be used ({failure}); running on CPU"
        try:
            return ort.InferenceSession(path, options, providers=[CPU])
        except Exception as exc:
            raise ModelError(f"{path}: onnxruntime cannot run this model ({exc})") from exc

    def describe(self) -> str:
        where = "CUDA" if self.provider == CUDA else "CPU"
        return where + (f" — {self.provider_note}" if self.provider_note else "")

    def preprocess(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 (N, bands, S, S) to the normalised float32 input the model expects.

        Float32 input is taken as already preprocessed, so a reading thread can do this work
        while the session runs.
        """
        if tiles.dtype == np.float32:
            return tiles
        return tiles.astype(np.float32) * self._scale + self._shift

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 tiles (N, bands, S, S), or their preprocessed float32 form, to float32 (N, D) unit vectors."""
        if tiles.ndim != 4 or tiles.shape[1:] != (len(self._scale[0]), self.input_size, self.input_size):
            raise ValueError(f"tiles of shape (N, {len(self._scale[0])}, {self.input_size}, "
                             f"{self.input_size}) expected, got {tiles.shape}")
        batch = self.model.fixed_batch
        if batch is None or batch == len(tiles):
            out = self.run_session(self.preprocess(tiles))
        else:  # a graph with a fixed batch size: feed it padded chunks
            chunks = []
            for start in range(0, len(tiles), batch):
                chunk = self.preprocess(tiles[start:start + batch])
                pad = batch - len(chunk)
                if pad:
                    chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
                chunks.append(self.run_session(chunk)[:batch - pad])
            out = np.concatenate(chunks)
        return l2_normalize(out)

    def embed_tta(self, tiles: np.ndarray) -> np.ndarray:
        """Mean of the embeddings of the 0/90/180/270 degree rotations, re-normalised."""
        rotations = [np.ascontiguousarray(np.rot90(tiles, k, axes=(2, 3))) for k in range(4)]
        embedded = self.embed(np.concatenate(rotations)).reshape(4, len(tiles), -1)
        return l2_normalize(embedded.mean(axis=0))

    def run_session(self, batch: np.ndarray) -> np.ndarray:
        """The raw model output for an already preprocessed float32 batch."""
        out = self._session.run([self.model.output_name], {self.model.input_name: batch})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(batch), -1)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)




_SHARED: "OrderedDict[tuple[str, str, str], Embedder]" = OrderedDict()
_SHARED_LOCK = threading.Lock()
_SHARED_SIZE = 2


def shared_embedder(model: ModelInfo, device: str) -> Embedder:
    """One session per model file and device for repeated queries: sessions take a while to create,
    and onnxruntime's run() is thread-safe. The key holds the file's sha256, so a changed file gets
    a new session."""
    key = (str(model.path), model.sha256, device)
    with _SHARED_LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
        embedder = Embedder(model, device)
        _SHARED[key] = embedder
        while len(_SHARED) > _SHARED_SIZE:
            _SHARED.popitem(last=False)
        return embedder
