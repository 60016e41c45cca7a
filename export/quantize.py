"""Static int8 quantisation of an rsir ONNX model, calibrated on real images, keeping its contract.

    python -m export.quantize MODEL.onnx --calibration DIR --out MODEL-int8.onnx \
        [--images 300] [--split auto|train|all] [--method minmax|entropy|percentile] [--no-fuse-attention]

Steps: fp16-stored weights are widened back to float32 (export.storage); the channel attention is fused
into one MultiHeadAttention node (export.fusion); onnxruntime's quant_pre_process runs shape inference
and its basic graph optimisations; quantize_static writes a QDQ graph with per-channel int8 weights and
uint8 activations, calibrated on images fed exactly as the engine feeds tiles (the model's input size
and mean/std). The file keeps the source's metadata contract under the name <name>-int8; its model card
says how it was quantised and calibrated, and moves the source's metrics to `quantisation.source_metrics`
(they are not the int8 model's: measure it with training.evaluate and add them with export.card).

Calibration images: the image files under DIR (class sub-folders or flat). With `--split train` (or `auto`
when the model card's training data folder has DIR's name and records its split), only the model's
training-split images are used, so the test split that evaluates the int8 model stays unseen. Weights are
quantised to 7 bits (`reduce_range`) unless --full-range: x86 CPUs without VNNI (AVX2 laptops) multiply
uint8 x int8 pairs into int16 sums that saturate with 8-bit weights.

The written file must match its source on held-out real images (not used for calibration; the calibration
images themselves where none are left over): min cosine >= INT8_MIN_COSINE, else nothing is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from rsir_qgis_plugin.core.model import ModelContract, read_model

from .fusion import MS_DOMAIN, fuse_channel_attention
from .images import to_model_input
from .onnx import IR_VERSION, OPSET, configure_logging, set_contract_metadata
from .storage import widen_stored_weights
from .verify import ParityError, onnx_session, row_cosines, run_onnx

log = logging.getLogger("export")

# Measured on the bundled default (64 held-out AID test images): min cosine 0.98, mean 0.995 with MinMax
# calibration. A broken quantisation (a wrong scale, a saturated layer) falls far below.
INT8_MIN_COSINE = 0.95
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
CALIBRATION_BATCH = 16
HELD_OUT_IMAGES = 64
METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeConfig:
    model: Path
    calibration: Path
    out: Path
    images: int = 300
    split: str = "auto"  # auto, train, all
    method: str = "minmax"
    fuse_attention: bool = True
    reduce_range: bool = True
    seed: int = 0


@dataclass(frozen=True)
class CalibrationSet:
    images: np.ndarray  # uint8 (N, bands, S, S), calibration
    held_out: np.ndarray  # uint8 (M, bands, S, S), parity only
    description: str


@dataclass(frozen=True)
class QuantizeReport:
    model: str
    size_mb: float
    source_size_mb: float
    min_cosine: float
    mean_cosine: float
    images: int
    fused_attention: int

    def describe(self) -> str:
        return (f"{self.model}: {self.size_mb:.1f} MB (source {self.source_size_mb:.1f} MB); against the "
                f"source on {self.images} held-out real images: min cosine {self.min_cosine:.4f}, mean "
                f"{self.mean_cosine:.5f} (threshold {INT8_MIN_COSINE}); {self.fused_attention} attention "
                "block(s) fused")


def image_files(root: Path) -> list[str]:
    """Image files under root (recursively), as sorted paths relative to root."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def calibration_set(root: Path, contract: ModelContract, count: int, split: str = "auto",
                    seed: int = 0) -> CalibrationSet:
    """`count` images for calibration and up to HELD_OUT_IMAGES others for the parity check, decoded as
    training.evaluate decodes them (centre square, antialiased bilinear resize to the tile size, then the
    input size)."""
    from training.data.folder import load_images  # torch: the export extra has it

    root = Path(root)
    if not root.is_dir():
        raise SystemExit(f"{root}: calibration folder not found")
    training = contract.training if isinstance(contract.training, dict) else {}
    data = training.get("data", {}) if isinstance(training.get("data"), dict) else {}
    recorded = "seed" in training.get("split", {}) or "seed" in data
    if split == "auto":
        split = "train" if recorded and data.get("root") == root.name else "all"
    rng = np.random.default_rng(seed)
    if split == "train":
        calibration_pool, held_out_pool, where = _split_pools(root, training, data)
    elif split == "all":
        files = image_files(root)
        order = rng.permutation(len(files)).tolist()
        held = min(HELD_OUT_IMAGES, len(files) // 4)
        calibration_pool, held_out_pool = [files[i] for i in order[held:]], [files[i] for i in order[:held]]
        where = f"every image under {root.name}/"
    else:
        raise SystemExit(f"--split must be auto, train or all, got '{split}'")
    if not calibration_pool:
        raise SystemExit(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) to calibrate with")
    count = min(count, len(calibration_pool))
    chosen = sorted(rng.choice(len(calibration_pool), count, replace=False).tolist())
    held = sorted(rng.choice(len(held_out_pool), min(HELD_OUT_IMAGES, len(held_out_pool)),
                             replace=False).tolist()) if held_out_pool else []
    bands = tuple(data.get("band_indices") or range(1, contract.bands + 1))

    def load(paths):
        return load_images(root, paths, bands, contract.input_size, tile_size=contract.tile_size).numpy()

    images = load([calibration_pool[i] for i in chosen])
    held_out = load([held_out_pool[i] for i in held]) if held else images[:0]
    resized = f" from {contract.tile_px} px tiles" if contract.tile_px != contract.input_size else ""
    description = (f"{len(images)} images drawn (seed {seed}) from {where} ({len(calibration_pool)} images), "
                   f"fed at {contract.input_size} px{resized} with the model's mean/std")
    return CalibrationSet(images=images, held_out=held_out, description=description)


def _split_pools(root: Path, training: dict, data: dict) -> tuple[list[str], list[str], str]:
    """The model's training-split images (calibration) and test-split images (parity), from its card."""
    from training.data.folder import scan_folder
    from training.data.split import stratified_split

    info = training.get("split", {})
    seed = info.get("seed", data.get("seed"))
    fraction = info.get("test_fraction", data.get("test_fraction"))
    if seed is None or fraction is None:
        raise SystemExit("--split train: the model card records no split (seed and test fraction)")
    config = training.get("config", {}) if isinstance(training.get("config"), dict) else {}
    folder = scan_folder(root, data.get("classes", ()), config.get("limit_per_class", 0))
    split = stratified_split(folder, fraction, seed)
    where = f"the training split of {root.name}/ (seed {seed}, test fraction {fraction})"
    return [p for p, _ in split.train], [p for p, _ in split.test], where


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over preprocessed float32 batches."""

    def __init__(self, inputs: np.ndarray, name: str):
        starts = range(0, len(inputs), CALIBRATION_BATCH)
        self._batches = iter([inputs[i:i + CALIBRATION_BATCH] for i in starts])
        self._name = name

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}

    def rewind(self) -> None:  # part of the protocol in recent onnxruntime; one pass is all calibration needs
        pass


def quantize_model(cfg: QuantizeConfig, calibration: CalibrationSet | None = None) -> QuantizeReport:
    """Write the int8 model at cfg.out (only once it passed the parity check) and report on it."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = read_model(cfg.model)
    contract = source.contract
    calibration = calibration or calibration_set(cfg.calibration, contract, cfg.images, cfg.split, cfg.seed)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if cfg.method not in methods:
        raise SystemExit(f"--method must be one of {', '.join(METHODS)}, got '{cfg.method}'")
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rsir-quantize-") as work:
        work = Path(work)
        widened = work / "fp32.onnx"
        onnx.save(widen_stored_weights(onnx.load(str(cfg.model))), str(widened))
        prepared = work / "prepared.onnx"
        quant_pre_process(str(widened), str(prepared))
        model, fused = (fuse_channel_attention(onnx.load(str(prepared))) if cfg.fuse_attention
                        else (onnx.load(str(prepared)), 0))
        onnx.save(model, str(prepared))
        quantized = work / "int8.onnx"
        batches = _Batches(to_model_input(calibration.images, contract), source.input_name)
        quantize_static(
            str(prepared), str(quantized), batches, quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=cfg.reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[cfg.method])
        model = onnx.load(str(quantized))
        _keep_used_opsets(model)
        set_contract_metadata(model, int8_contract(contract, source.sha256, cfg, calibration, fused))
        _check_versions(model, quantized)
        onnx.checker.check_model(model)
        partial = out.with_name(f".{out.name}.partial")
        try:
            onnx.save(model, str(partial))
            checked = calibration.held_out if len(calibration.held_out) else calibration.images
            min_cos, mean_cos, count = _parity(cfg.model, partial, contract, checked)
            if not min_cos >= INT8_MIN_COSINE:  # NaN fails too
                raise ParityError(f"{out}: int8 model departs from {cfg.model}: min cosine {min_cos:.4f} "
                                  f"(mean {mean_cos:.4f}) on {count} images, threshold {INT8_MIN_COSINE}")
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    return QuantizeReport(model=str(out), size_mb=out.stat().st_size / 1e6,
                          source_size_mb=Path(cfg.model).stat().st_size / 1e6, min_cosine=min_cos,
                          mean_cosine=mean_cos, images=count, fused_attention=fused)


def int8_contract(contract: ModelContract, source_sha256: str, cfg: QuantizeConfig,
                  calibration: CalibrationSet, fused: int) -> ModelContract:
    """The source's contract named <name>-int8, its card saying how it was quantised."""
    import onnxruntime

    training = dict(contract.training)
    source_metrics = training.pop("metrics", {})
    training["precision"] = "int8"
    training["quantisation"] = {
        "tool": f"python -m export.quantize (onnxruntime {onnxruntime.__version__} quantize_static)",
        "format": "QDQ; int8 weights per output channel" + (" (7-bit range)" if cfg.reduce_range else "")
                  + ", uint8 activations per tensor",
        "calibration": f"{cfg.method}; {calibration.description}",
        "fused_attention": (f"{fused} channel-attention block(s) as com.microsoft.MultiHeadAttention"
                            if fused else "none"),
        "source_model": {"name": contract.name, "sha256": source_sha256},
        "source_metrics": source_metrics,
    }
    name = contract.name if contract.name.endswith("-int8") else f"{contract.name}-int8"
    return dataclasses.replace(contract, name=name, training=training)


def _parity(source: Path, quantized: Path, contract: ModelContract,
            images: np.ndarray) -> tuple[float, float, int]:
    """Min and mean cosine of int8 against source embeddings on real images.

    Synthetic noise is left out on purpose: it drives activations far outside the ranges calibration
    measured on real scenes (a tiny test net dropped to cosine 0.92 on noise, 0.994 on real crops), and
    the engine never feeds such tiles.
    """
    inputs = to_model_input(images, contract)
    expected = run_onnx(onnx_session(source), inputs, batch=16)
    got = run_onnx(onnx_session(quantized), inputs, batch=16)
    cosines = row_cosines(expected, got)
    return float(np.min(cosines)), float(np.mean(cosines)), len(inputs)


def _keep_used_opsets(model: onnx.ModelProto) -> None:
    """Drop the opset imports onnxruntime's optimiser adds (ai.onnx.ml, nchwc, ...) that no node uses."""
    used = {node.domain or "" for node in model.graph.node} | {""}
    kept = [entry for entry in model.opset_import if (entry.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def _check_versions(model: onnx.ModelProto, path: Path) -> None:
    opsets = {entry.domain or "": entry.version for entry in model.opset_import}
    if model.ir_version != IR_VERSION or opsets.get("") != OPSET or set(opsets) - {"", MS_DOMAIN}:
        raise RuntimeError(f"{path}: quantisation wrote IR version {model.ir_version}, opsets {opsets}; rsir "
                           f"models need IR {IR_VERSION} and opset {OPSET}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="an rsir ONNX model (fp32 or fp16-stored weights)")
    parser.add_argument("--calibration", type=Path, required=True, help="folder of real images")
    parser.add_argument("--out", type=Path, required=True, help="the int8 .onnx file to write")
    parser.add_argument("--images", type=int, default=300, help="calibration images")
    parser.add_argument("--split", default="auto", choices=("auto", "train", "all"),
                        help="train: only the model card's training-split images (auto: if DIR is its data)")
    parser.add_argument("--method", default="minmax", choices=METHODS, help="calibration method")
    parser.add_argument("--no-fuse-attention", dest="fuse_attention", action="store_false",
                        help="keep channel attention as MatMul/Softmax/MatMul")
    parser.add_argument("--full-range", dest="reduce_range", action="store_false",
                        help="8-bit weights (only for CPUs with VNNI; AVX2 CPUs may saturate)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> QuantizeReport:
    cfg = QuantizeConfig(model=args.model, calibration=args.calibration, out=args.out, images=args.images,
                         split=args.split, method=args.method, fuse_attention=args.fuse_attention,
                         reduce_range=args.reduce_range, seed=args.seed)
    configure_logging()
    log.info("quantize: %s", cfg)
    try:
        report = quantize_model(cfg)
    except ParityError as exc:
        raise SystemExit(str(exc)) from exc
    info = read_model(report.model)
    log.info("%s\nsha256 %s: %s", report.describe(), info.sha256[:12], info.describe())
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
