"""`rsir doctor`, in a subprocess as a user runs it: the report, and the exit status that says whether
indexing and search can run (with one line per missing piece)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rsir_qgis_plugin import diagnostics
from rsir_qgis_plugin.core import onnx_header

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "rsir_qgis_plugin" / "models"


def doctor(*setup: str) -> subprocess.CompletedProcess:
    """`python -m rsir_qgis_plugin doctor`, after `setup` statements run in the same interpreter."""
    if setup:
        code = "; ".join(["import runpy, sys", *setup, "sys.argv = ['rsir', 'doctor']",
                          "runpy.run_module('rsir_qgis_plugin', run_name='__main__')"])
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, "-m", "rsir_qgis_plugin", "doctor"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def report_line(report: str, name: str) -> str:
    found = [line for line in report.splitlines() if line.split("]", 1)[-1].lstrip().startswith(f"{name}:")]
    assert len(found) == 1, f"no single '{name}' line in:\n{report}"
    return found[0]


def test_doctor_reports_versions_providers_and_models_and_exits_0():
    import numpy
    import onnxruntime

    done = doctor()
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout
    assert "rsir can index and search here." in report
    assert "[ok]" in report_line(report, "numpy") and numpy.__version__ in report_line(report, "numpy")
    assert onnxruntime.__version__ in report_line(report, "onnxruntime")
    providers = report_line(report, "onnxruntime providers")
    assert all(p in providers for p in onnxruntime.get_available_providers())
    for name in ("Python", "GDAL", "PROJ", "rasterio", "faiss", "dask", "torch", "settings",
                 "private packages"):
        report_line(report, name)
    for model in sorted(MODELS.glob("*.onnx")):
        line = report_line(report, f"model {model.name}")
        assert line.startswith("[ok]") and "opset 17" in line and "loads with onnxruntime" in line, line
    cuda = report_line(report, "CUDA")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert cuda == ("[optional] CUDA: not available (onnxruntime has no CUDAExecutionProvider); "
                        "for an NVIDIA GPU install onnxruntime-gpu instead of onnxruntime")
    else:  # a real CUDA session was tried: it ran, or onnxruntime's reason is given
        assert cuda.startswith("[ok]") or "fell back to CPU:" in cuda or "failed:" in cuda, cuda


def test_missing_faiss_exits_1_naming_it_in_one_line():
    done = doctor("sys.modules['faiss'] = None")  # import faiss now fails, as where it is not installed
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "rsir: doctor: faiss missing: not installed (the similarity index; pip install faiss-cpu)"]
    assert report_line(done.stdout, "faiss").startswith("[missing]")
    assert "rsir cannot index and search here: 1 problem(s)" in done.stdout


def test_no_bundled_model_exits_1_naming_the_models_folder(tmp_path):
    done = doctor("from pathlib import Path", "import rsir_qgis_plugin.core.model as model",
                  f"model.MODELS_DIR = Path({str(tmp_path)!r})",
                  f"model.DEFAULT_MODEL_PATH = Path({str(tmp_path / 'default.onnx')!r})")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"rsir: doctor: bundled model missing: no .onnx file in {tmp_path}; reinstall the plugin "
        "(its models folder holds default.onnx)"]


def test_a_model_onnxruntime_cannot_load_is_reported_with_its_reason(tmp_path):
    (tmp_path / "default.onnx").write_bytes((MODELS / "default.onnx").read_bytes()[:4096])  # truncated
    done = doctor("from pathlib import Path", "import rsir_qgis_plugin.core.model as model",
                  f"model.MODELS_DIR = Path({str(tmp_path)!r})",
                  f"model.DEFAULT_MODEL_PATH = Path({str(tmp_path / 'default.onnx')!r})")
    assert done.returncode == 1
    assert report_line(done.stdout, "model default.onnx").startswith("[failed]")
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("rsir: doctor: bundled model failed: none of default.onnx loads with onnxruntime")


def test_torch_is_not_imported_when_it_is_not_installed():
    done = doctor("sys.modules['torch'] = None")
    assert done.returncode == 0, done.stderr
    assert report_line(done.stdout, "torch").startswith("[optional] torch: not installed")


@pytest.mark.parametrize("model", sorted(MODELS.glob("*.onnx")), ids=lambda p: p.name)
def test_opset_read_from_the_file_matches_onnx(model):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model), load_external_data=False)
    ir_version, opsets = onnx_header.read_onnx_header(model)
    assert ir_version == proto.ir_version
    assert opsets == {entry.domain: entry.version for entry in proto.opset_import}


def test_a_cuda_provider_that_falls_back_is_reported_with_onnxruntime_s_own_words(tmp_path):
    """onnxruntime-gpu without cuDNN lists CUDA, logs why it cannot load it on stderr, runs on CPU."""
    missing = "libcudnn.so.9: cannot open shared object file"
    reason = ("[E:onnxruntime:Default, provider_bridge_ort.cc:2251 TryGetProviderInfo_CUDA] Failed to load "
              f"library libonnxruntime_providers_cuda.so with error: {missing}")

    class FallingBackSession:
        def __init__(self, path, options, providers):
            os.write(2, (reason + "\n").encode())  # from native code, as onnxruntime's logger writes

        def get_providers(self):
            return ["CPUExecutionProvider"]

    class OnnxruntimeGpuWithoutCudnn:
        SessionOptions = object
        InferenceSession = FallingBackSession

        @staticmethod
        def get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    check = diagnostics._cuda_check(OnnxruntimeGpuWithoutCudnn, MODELS / "default.onnx")
    assert check.status == diagnostics.FAILED and not check.required
    assert "fell back to CPU" in check.detail and missing in check.detail
