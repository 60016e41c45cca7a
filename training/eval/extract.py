"""Embedding a decoded image set with a torch network or an ONNX model, optionally with rotated inputs."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch

from ..data.augment import normalize, rotate, to_unit

# A model as evaluation sees it: normalised float32 (N, C, S, S) on `device` -> (N, D) numpy embeddings.
EmbedFn = Callable[[torch.Tensor], np.ndarray]


def torch_embedder(net: torch.nn.Module, amp_dtype: torch.dtype | None = None,
                   channels_last: bool = False) -> EmbedFn:
    """Eval-mode forward without gradients, under autocast when amp_dtype is given."""
    def run(x: torch.Tensor) -> np.ndarray:
        net.eval()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(x.device.type, dtype=amp_dtype or torch.float32,
                                             enabled=amp_dtype is not None):
            return net(x).float().cpu().numpy()
    return run


def onnx_embedder(path: str, normalized: bool) -> EmbedFn:
    """onnxruntime on CPU; rows are L2-normalised here when the model does not promise it."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> np.ndarray:
        out = session.run(None, {name: x.cpu().numpy().astype(np.float32)})[0].astype(np.float32)
        return out if normalized else out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return run


def embed(images: torch.Tensor, fn: EmbedFn, mean: Sequence[float], std: Sequence[float],
          batch_size: int = 256, device: str | torch.device = "cpu", degrees: float = 0.0) -> np.ndarray:
    """uint8 (N, C, S, S) -> (N, D) float32 embeddings; degrees rotates every image first."""
    device = torch.device(device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.tensor(std, dtype=torch.float32, device=device)
    out = []
    for start in range(0, len(images), batch_size):
        x = to_unit(images[start:start + batch_size].to(device, non_blocking=True))
        if degrees:
            x = rotate(x, degrees)
        out.append(fn(normalize(x, mean_t, std_t)))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
