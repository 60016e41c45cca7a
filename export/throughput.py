"""CPU onnxruntime throughput of exported models, with the session options the engine uses.

    python -m export.throughput a.onnx b.onnx --batch 32 --threads 2 [--rounds 5]

Models are measured in alternating rounds (a, b, a, b, ...) in one process, so that the slow spells of a
shared machine hit each alike; with two models or more it prints each model's median rate and its median
per-round speed-up over the first model.
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


class _Bench:
    """One model's session and a ready input batch."""

    def __init__(self, path: Path, batch: int, threads: int):
        self.path, self.batch, self.threads = path, batch, threads
        contract = read_model(path).contract
        self.session = onnx_session(path, threads=threads)
        self.name = self.session.get_inputs()[0].name
        self.inputs = to_model_input(synthetic_images(batch, contract.bands, contract.input_size), contract)
        self.session.run(None, {self.name: self.inputs})  # warm-up: the first run allocates

    def seconds(self, repeats: int) -> list[float]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.session.run(None, {self.name: self.inputs})
            times.append(time.perf_counter() - start)
        return times

    def result(self, seconds: list[float]) -> Throughput:
        return Throughput(model=str(self.path), precision=graph_precision(self.path),
                          size_mb=self.path.stat().st_size / 1e6, batch=self.batch, threads=self.threads,
                          images_per_second=self.batch / statistics.median(seconds),
                          slowest_images_per_second=self.batch / max(seconds))


def measure_throughput(path: str | Path, batch: int = 32, threads: int = 2, repeats: int = 5) -> Throughput:
    """Images per second of one model on CPU: one warm-up batch, then the median of `repeats` batches."""
    bench = _Bench(Path(path), batch, threads)
    return bench.result(bench.seconds(repeats))


@dataclass(frozen=True)
class Comparison:
    """Alternating rounds of several models: per-model results and per-round rates."""

    results: list[Throughput]  # over all rounds' batches
    round_rates: list[list[float]]  # [model][round] images/s (median batch of that round)

    def speedups(self) -> list[float]:
        """Each model's median over rounds of (its rate / the first model's rate in the same round)."""
        base = self.round_rates[0]
        return [statistics.median(r / b for r, b in zip(rates, base)) for rates in self.round_rates]


def compare_throughput(paths: list[str | Path], batch: int = 32, threads: int = 2, repeats: int = 5,
                       rounds: int = 1) -> Comparison:
    """Measure several models in alternating rounds of `repeats` batches each."""
    benches = [_Bench(Path(p), batch, threads) for p in paths]
    all_seconds: list[list[float]] = [[] for _ in benches]
    round_rates: list[list[float]] = [[] for _ in benches]
    for _ in range(rounds):
        for i, bench in enumerate(benches):
            seconds = bench.seconds(repeats)
            all_seconds[i] += seconds
            round_rates[i].append(batch / statistics.median(seconds))
    return Comparison([b.result(s) for b, s in zip(benches, all_seconds)], round_rates)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.throughput",
                                     description="CPU onnxruntime throughput of rsir ONNX models.")
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per model and round")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds over the models")
    return parser


def main(args: argparse.Namespace) -> list[Throughput]:
    comparison = compare_throughput(args.models, batch=args.batch, threads=args.threads, repeats=args.repeats,
                                    rounds=args.rounds)
    for result in comparison.results:
        print(result.describe())
    if len(args.models) > 1:
        first = args.models[0].name
        for result, rates, speedup in zip(comparison.results, comparison.round_rates, comparison.speedups()):
            per_round = ", ".join(f"{r:.1f}" for r in rates)
            print(f"{Path(result.model).name}: rounds {per_round} img/s; median speed-up over {first} "
                  f"{speedup:.2f}x")
    return comparison.results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
