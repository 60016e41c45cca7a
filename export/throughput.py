"""CPU onnxruntime throughput of exported models, with the session options the engine uses.

    python -m export.throughput a.onnx b.onnx --batch 32 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rsir_qgis_plugin.core.model import read_model

from .images import synthetic_images, to_model_input
from .verify import graph_precision, onnx_session


@dataclass(frozen=True)
class Throughput:
    model: str
    precision: str
    size_mb: float
    batch: int
    threads: int
    images_per_second: float  # median over the timed batches
    slowest_images_per_second: float

    def describe(self) -> str:
        return (f"{self.model} ({self.precision}, {self.size_mb:.1f} MB): {self.images_per_second:.1f} img/s "
                f"(slowest batch {self.slowest_images_per_second:.1f}) at batch {self.batch}, "
                f"{self.threads} threads, CPU")


def measure_throughput(path: str | Path, batch: int = 32, threads: int = 2, repeats: int = 5) -> Throughput:
    """Images per second of one model on CPU: one warm-up batch, then the median of `repeats` batches."""
    path = Path(path)
    contract = read_model(path).contract
    session = onnx_session(path, threads=threads)
    name = session.get_inputs()[0].name
    inputs = to_model_input(synthetic_images(batch, contract.bands, contract.input_size), contract)
    session.run(None, {name: inputs})
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: inputs})
        seconds.append(time.perf_counter() - start)
    return Throughput(model=str(path), precision=graph_precision(path), size_mb=path.stat().st_size / 1e6,
                      batch=batch, threads=threads, images_per_second=batch / statistics.median(seconds),
                      slowest_images_per_second=batch / max(seconds))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.throughput",
                                     description="CPU onnxruntime throughput of rsir ONNX models.")
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per model")
    return parser


def main(args: argparse.Namespace) -> list[Throughput]:
    results = []
    for model in args.models:
        result = measure_throughput(model, batch=args.batch, threads=args.threads, repeats=args.repeats)
        print(result.describe())
        results.append(result)
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
