"""Turning uint8 tiles into L2-normalised embeddings with onnxruntime, on CUDA when it really works."""
from __future__ import annotations

import numpy as np

from .cache import KeyedCache
from .errors import ModelError, RuntimeUnavailableError
from .memory import run_rows_within_memory
from .model import ModelInfo
from .runtime import CPU, CUDA, import_onnxruntime, inference_session_options, usable_providers

# Distinct test tiles, each run alone, then as batches of 2 and of PROBE_TILES: dtype, batch and
# output-size faults show on the first runs, and a layer that mixes the tiles of a batch only from some
# size on (N >= 3) shows when every row of the larger batch is compared with its tile run alone.
PROBE_TILES = 4
# 1 - cosine allowed between a tile's embedding alone and within a batch (GPU kernels vary by batch size)
PROBE_TOLERANCE = 1e-3


class Embedder:
    """An inference session for one model: feeds it per the contract, returns unit vectors.

    `provider` says where it runs; `provider_note` explains a fallback from CUDA to CPU, so a
    failed CUDA load is never silent. Creating one runs the model on a couple of test tiles
    (probe()), so a model that fails at run time is refused before any raster is read.
    """

    def __init__(self, model: ModelInfo, device: str = "auto", threads: int | None = None):
        ort = import_onnxruntime()
        self.model = model
        contract = model.contract
        self.input_size = contract.input_size
        self.embedding_dim = contract.embedding_dim
        self.bands = contract.bands
        std = np.asarray(contract.std, dtype=np.float32)
        mean = np.asarray(contract.mean, dtype=np.float32)
        # (x / 255 - mean) / std as one multiply-add per pixel.
        self._scale = (1.0 / (255.0 * std))[None, :, None, None]
        self._shift = (-mean / std)[None, :, None, None]
        self.provider_note = ""
        # The most tiles one run holds: a larger batch is run in parts, so its activations fit in memory.
        self.run_rows = run_rows_within_memory(self.bands, self.input_size)
        self._options = inference_session_options(ort, threads)
        self._session = self._make_session(ort, device)
        self.provider = self._session.get_providers()[0]
        self._probe_or_fall_back(ort, device)

    def _make_session(self, ort, device: str):
        path = str(self.model.path)
        want_cuda = device in ("auto", "cuda")
        cuda_listed = CUDA in ort.get_available_providers()
        if device == "cuda" and not cuda_listed:
            raise RuntimeUnavailableError(
                f"CUDA was asked for but onnxruntime {ort.__version__} offers only "
                f"{', '.join(usable_providers(ort))}: install onnxruntime-gpu (and not onnxruntime)")
        if want_cuda and cuda_listed:
            try:
                session = ort.InferenceSession(path, self._options, providers=[CUDA, CPU])
            except Exception as exc:  # noqa: BLE001 - any CUDA failure falls back to CPU, with its words
                session, failure = None, _first_line(exc)
            else:
                failure = "" if session.get_providers()[0] == CUDA else "CUDA provider did not load"
            if not failure:
                return session
            if device == "cuda":
                raise RuntimeUnavailableError(f"CUDA could not be used for {path}: {failure} "
                                              "(check the CUDA and cuDNN versions onnxruntime-gpu needs)")
            self.provider_note = f"CUDA could not be used ({failure}); running on CPU"
        return self._cpu_session(ort)

    def _cpu_session(self, ort):
        try:
            return ort.InferenceSession(str(self.model.path), self._options, providers=[CPU])
        except Exception as exc:
            raise ModelError(f"{self.model.path}: onnxruntime cannot run this model "
                             f"({_first_line(exc)})") from exc

    def _probe_or_fall_back(self, ort, device: str) -> None:
        """Probe where the session runs; when CUDA fails, CPU tells a broken model from a CUDA fault."""
        problem = self._probe_problem()
        if not problem:
            return
        if self.provider != CUDA:
            raise ModelError(f"{self.model.path}: {problem}")
        self._session, self.provider = self._cpu_session(ort), CPU
        self.probe()  # fails too: the model itself is at fault
        if device == "cuda":
            raise RuntimeUnavailableError(f"CUDA could not run {self.model.path}: {problem} "
                                          "(it runs on CPU: choose the CPU or auto device)")
        self.provider_note = f"CUDA failed on test tiles ({problem}); running on CPU"

    def probe(self) -> None:
        """Run the model on one test tile and on a batch of two, as embed() feeds it.

        Raises ModelError naming the file and the fault: onnxruntime failing (e.g. an input dtype or
        a batch size the graph does not take), output rows not matching input tiles, an output size
        other than the metadata's embedding_dim, NaN/inf values, or a tile's embedding changing with
        the other tiles of its batch.
        """
        problem = self._probe_problem()
        if problem:
            raise ModelError(f"{self.model.path}: {problem}")

    def _probe_problem(self) -> str:
        tiles = probe_tiles(self.bands, self.input_size, PROBE_TILES)
        alone = []
        runs = [(tiles[i:i + 1], "one test tile") for i in range(PROBE_TILES)]
        runs += [(tiles[:count], f"a batch of {count} test tiles") for count in (2, PROBE_TILES)]
        for batch, what in runs:
            try:
                raw = self._forward(self.preprocess(batch))
            except _BadOutput as exc:
                return f"{exc} (on {what})"
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (InvalidArgument, Fail, ...)
                return f"onnxruntime fails on {what} ({_first_line(exc)})"
            if not np.isfinite(raw).all():
                return f"outputs NaN or infinite values on {what}"
            # Finite values whose squares overflow float32 make an infinite embedding length: the model
            # overflows float32, which is not its tiles mixing (their directions compare as zero then).
            with np.errstate(over="ignore"):  # the overflow is the finding, not a warning to print
                lengths = np.linalg.norm(raw, axis=1)
            if not np.isfinite(lengths).all():
                return (f"outputs values too large for float32 on {what} (largest {np.abs(raw).max():.3g}: "
                        "the embedding's length overflows to infinity)")
            if not np.abs(raw).max(axis=1).all():
                return f"outputs an all-zero embedding on {what}"
            if len(alone) < PROBE_TILES:
                alone.append(l2_normalize(raw)[0])
            elif (np.sum(l2_normalize(raw) * np.stack(alone[:len(raw)]), axis=1) < 1.0 - PROBE_TOLERANCE).any():
                return ("a tile's embedding changes with the other tiles of its batch (a layer that mixes "
                        f"the batch, such as BatchNorm exported in training mode; on {what})")
        return ""

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
        out = np.multiply(tiles, self._scale, dtype=np.float32)  # one float32 buffer, no uint8->float copy
        out += self._shift
        return out

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 tiles (N, bands, S, S), or their preprocessed float32 form, to float32 (N, D) unit vectors.

        A row may be non-finite if the model gives NaN/inf for that tile: keep only finite_rows().
        ModelError when the model's output does not have one D-vector per tile.
        """
        if tiles.ndim != 4 or tiles.shape[1:] != (self.bands, self.input_size, self.input_size):
            raise ValueError(f"tiles of shape (N, {self.bands}, {self.input_size}, "
                             f"{self.input_size}) expected, got {tiles.shape}")
        try:
            out = self._forward(self.preprocess(tiles))
        except _BadOutput as exc:
            raise ModelError(f"{self.model.path}: {exc}") from exc
        except MemoryError as exc:
            raise ModelError(self._out_of_memory(len(tiles), "numpy could not allocate it")) from exc
        except Exception as exc:  # onnxruntime's own types (Fail, RuntimeException, ...)
            if "Failed to allocate memory" in str(exc):
                raise ModelError(self._out_of_memory(len(tiles), _first_line(exc))) from exc
            raise ModelError(f"{self.model.path}: onnxruntime fails on a batch of {len(tiles)} tile(s) "
                             f"({_first_line(exc)})") from exc
        return l2_normalize(out)

    def _out_of_memory(self, count: int, detail: str) -> str:
        return (f"{self.model.path}: not enough memory to embed {count} tile(s) of {self.input_size} px at "
                f"once ({detail}); use a smaller batch size (--batch-size)")

    def embed_tta(self, tiles: np.ndarray) -> np.ndarray:
        """Mean of the embeddings of the 0/90/180/270 degree rotations, re-normalised."""
        rotations = [np.ascontiguousarray(np.rot90(tiles, k, axes=(2, 3))) for k in range(4)]
        embedded = self.embed(np.concatenate(rotations)).reshape(4, len(tiles), -1)
        return l2_normalize(embedded.mean(axis=0))

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """Raw (N, D) output for a preprocessed batch; padded chunks for a graph with a fixed batch size."""
        fixed = self.model.fixed_batch
        if fixed is None and self.run_rows and len(batch) > self.run_rows:
            step = self.run_rows  # the probe showed that rows do not depend on their batch
            return np.concatenate([self._run(batch[i:i + step]) for i in range(0, len(batch), step)])
        if fixed is None or fixed == len(batch):
            return self._run(batch)
        chunks = []
        for start in range(0, len(batch), fixed):
            chunk = batch[start:start + fixed]
            pad = fixed - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
            chunks.append(self._run(chunk)[:fixed - pad])
        return np.concatenate(chunks)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self._session.run([self.model.output_name], {self.model.input_name: batch})[0]
        shape = np.shape(out)
        if len(shape) < 1 or shape[0] != len(batch):
            raise _BadOutput(f"returns output of shape {shape} for {len(batch)} input tile(s); "
                             "its first axis must follow the input batch")
        per_tile = int(np.prod(shape[1:]))
        if per_tile != self.embedding_dim:
            raise _BadOutput(f"returns {per_tile} values per tile but its metadata says "
                             f"embedding_dim {self.embedding_dim}")
        return np.asarray(out, dtype=np.float32).reshape(len(batch), self.embedding_dim)

    def run_session(self, batch: np.ndarray) -> np.ndarray:
        """The raw model output (N, D) for an already preprocessed float32 batch of the graph's batch size."""
        try:
            return self._run(batch)
        except _BadOutput as exc:
            raise ModelError(f"{self.model.path}: {exc}") from exc


class _BadOutput(Exception):
    """The model ran but its output does not have one embedding per tile (message without the path)."""


def probe_tiles(bands: int, size: int, count: int = 2) -> np.ndarray:
    """`count` (2 to 4) reproducible uint8 test tiles (N, bands, size, size): a textured gradient; the same
    turned, dimmed and lifted; flipped and inverted; and coarse noise: unlike enough that a model mixing
    the tiles of a batch shows it."""
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 20, (bands, size, size))
    base = ramp[None, :] * 0.5 + ramp[:, None] * 0.5 + noise
    tile = np.clip(base, 0, 255).astype(np.uint8)
    blocks = rng.integers(0, 256, (bands, (size + 3) // 4, (size + 3) // 4), dtype=np.uint8)
    coarse = np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2)[:, :size, :size]
    tiles = [tile, np.rot90(tile, 1, axes=(1, 2)) // 2 + 100, 255 - tile[:, ::-1, :], coarse]
    return np.ascontiguousarray(np.stack(tiles[:count]))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; the length is taken in float64, so a finite row whose squares
    overflow float32 still gets its direction (not a zero vector); rows with NaN/inf stay non-finite."""
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def finite_rows(vectors: np.ndarray) -> np.ndarray:
    """(N,) bool: the rows of (N, D) embeddings with no NaN or infinite value, the only ones to store."""
    return np.isfinite(vectors).all(axis=1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


_SESSIONS: KeyedCache[Embedder] = KeyedCache(size=2)  # a session holds the model's weights in memory


def shared_embedder(model: ModelInfo, device: str) -> Embedder:
    """One session per model file and device for repeated queries: sessions take a while to create,
    and onnxruntime's run() is thread-safe. The key holds the file's sha256, so a changed file gets
    a new session. cache.release_shared() lets the sessions go."""
    return _SESSIONS.get((str(model.path), model.sha256, device), lambda: Embedder(model, device))
