"""Hostile models (issue 20, items 12 and 18): weights changed beside an unchanged .onnx, batch mixing
that starts at 3 tiles, outputs that overflow float32, run-time failures, absurd input sizes and batch
sizes under a real address-space limit. Each model is a small real ONNX graph run by onnxruntime; the
command line runs in a child process."""
from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import onnx
import pytest
import rasterio
from onnx import TensorProto, helper, numpy_helper

from rsir_qgis_plugin.core.embedder import PROBE_TILES, Embedder, probe_tiles
from rsir_qgis_plugin.core.errors import ModelError
from rsir_qgis_plugin.core.model import ModelContract, read_model
from rsir_qgis_plugin.core.store import IndexReader
from tests.core.test_model_probe import BANDS, DIM, SIZE, const, embed_nodes, node, save_model, weights

from .conftest import ROOT, one_line_error, run_cli

GB = 2 ** 30


def external_model(folder, scale: float = 1.0):
    """The probe tests' projection model with its weights in weights.bin beside model.onnx."""
    path = save_model(folder / "model.onnx", embed_nodes(), [weights()])
    model = onnx.load(str(path))
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(
        numpy_helper.to_array(model.graph.initializer[0]) * scale, "W"))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").stat().st_size == BANDS * SIZE * SIZE * DIM * 4
    return path


def test_changed_external_weights_make_another_model_and_the_index_refuses_them(tmp_path, town_crop):
    model = external_model(tmp_path)
    before = read_model(model)
    index = tmp_path / "idx"
    built = run_cli("index", "build", index, town_crop, "--model", model, "--tile-size", 96, "--stride", 96)
    assert built.returncode == 0, built.stderr
    first = onnx.load(str(model))  # reads weights.bin: same graph, other weights of the same size
    first.graph.initializer[0].CopyFrom(numpy_helper.from_array(
        numpy_helper.to_array(first.graph.initializer[0])[::-1].copy(), "W"))
    onnx.save(first, str(tmp_path / "other.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)  # rewrites weights.bin in place
    (tmp_path / "other.onnx").unlink()
    assert read_model(model).sha256 != before.sha256  # in this process too: the cache keys the weights file
    refused = run_cli("index", "build", index, town_crop, "--model", model)
    one_line_error(refused, "this index was built with model", str(model))
    with rasterio.open(town_crop) as raster:
        left, bottom = raster.bounds.left, raster.bounds.bottom
    # The index's model, at its recorded path, is not that model any more.
    one_line_error(run_cli("search", index, "--raster", town_crop, "--bbox", left, bottom, left + 10, bottom + 10))


def test_external_data_outside_the_models_folder_is_refused_without_reading_it(tmp_path):
    model = external_model(tmp_path)
    proto = onnx.load(str(model), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "/dev/zero"  # hashing it would never end
    onnx.save(proto, str(model))
    with pytest.raises(ModelError, match="names external data '/dev/zero' outside its folder"):
        read_model(model)


def test_a_model_mixing_the_tiles_of_a_batch_from_three_tiles_on_is_refused(tmp_path, town_crop):
    # Adds the batch mean to every row, but only when the batch holds 3 tiles or more.
    nodes = [*embed_nodes(out="rows"), node("Shape", ["x"], ["n"], start=0, end=1),
             node("Greater", ["n", "two"], ["big"]), node("Cast", ["big"], ["gate"], to=TensorProto.FLOAT),
             node("ReduceMean", ["rows"], ["mean"], axes=[0], keepdims=1), node("Mul", ["mean", "gate"], ["mixed"]),
             node("Add", ["rows", "mixed"], ["y"])]
    two = numpy_helper.from_array(np.array([2], np.int64), "two")
    model = save_model(tmp_path / "mixes_from_3.onnx", nodes, [weights(), two])
    with pytest.raises(ModelError, match="a tile's embedding changes with the other tiles of its batch"):
        Embedder(read_model(model), "cpu")
    one_line_error(run_cli("index", "build", tmp_path / "idx", town_crop, "--model", model),
                   "mixes_from_3.onnx", "changes with the other tiles of its batch")


def test_a_model_overflowing_float32_is_reported_as_overflow_not_as_batch_mixing(tmp_path):
    nodes = [*embed_nodes(out="rows"), node("Mul", ["rows", "huge"], ["y"])]
    model = save_model(tmp_path / "overflow.onnx", nodes, [weights(), const("huge", 1e20)])
    with pytest.raises(ModelError) as caught:
        Embedder(read_model(model), "cpu")
    assert "too large for float32" in str(caught.value) and "batch" not in str(caught.value)


def test_a_model_failing_at_run_time_prints_only_rsirs_line(tmp_path, town_crop):
    in_probe = save_model(tmp_path / "fixed_one.onnx", [node("Reshape", ["x", "one"], ["flat"]),
                                                        node("MatMul", ["flat", "W"], ["y"])],
                          [weights(), numpy_helper.from_array(np.array([1, BANDS * SIZE * SIZE], np.int64), "one")])
    one_line_error(run_cli("index", "build", tmp_path / "a", town_crop, "--model", in_probe),
                   "fixed_one.onnx: onnxruntime fails on a batch of 2 test tiles")
    # Passes the probe, then fails in the build: a Gather out of bounds for tiles darker than the probe's.
    normalised = (probe_tiles(BANDS, SIZE, PROBE_TILES) / 255.0 - 0.5) / 0.25  # save_model's mean and std
    offset = float(normalised.reshape(PROBE_TILES, -1).mean(axis=1).min()) - 0.01
    nodes = [*embed_nodes(out="rows"), node("ReduceMean", ["flat"], ["level"], axes=[1], keepdims=0),
             node("Sub", ["offset", "level"], ["below"]), node("Relu", ["below"], ["dark"]),
             node("Mul", ["dark", "thousand"], ["scaled"]), node("Cast", ["scaled"], ["index"], to=TensorProto.INT64),
             node("Gather", ["table", "index"], ["picked"], axis=0), node("Add", ["rows", "picked"], ["y"])]
    model = save_model(tmp_path / "fails_on_dark.onnx", nodes,
                       [weights(), const("offset", offset), const("thousand", 1000.0),
                        numpy_helper.from_array(np.zeros((1, DIM), np.float32), "table")])
    one_line_error(run_cli("index", "build", tmp_path / "b", town_crop, "--model", model, "--tile-size", 96,
                           "--stride", 96, "--batch-size", 16), "fails_on_dark.onnx: onnxruntime fails on a batch of")


def test_a_model_claiming_a_60000_px_input_is_refused_when_read(tmp_path, town_crop):
    """Under a 2 GB address-space limit, the probe's first test tile (43 GB) was a numpy traceback."""
    nodes = [node("GlobalAveragePool", ["x"], ["pooled"]), node("Flatten", ["pooled"], ["flat"], axis=1),
             node("MatMul", ["flat", "W"], ["y"])]
    graph = helper.make_graph(
        nodes, "huge_input", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", BANDS, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", DIM])],
        initializer=[numpy_helper.from_array(np.eye(BANDS, DIM, dtype=np.float32), "W")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    props = ModelContract(name="huge_input", embedding_dim=DIM, input_size=SIZE, bands=BANDS,
                          mean=(0.5,) * BANDS, std=(0.25,) * BANDS).to_metadata()
    props.update({"rsir.input_size": "60000", "tile_size": "60000"})
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    model = tmp_path / "huge_input.onnx"
    onnx.save(proto, str(model))
    done = run_cli("index", "build", tmp_path / "idx", town_crop, "--model", model,
                   limits=[(resource.RLIMIT_AS, 2 * GB)])
    one_line_error(done, f"{model}: ", "input size 60000 px is more than rsir takes (4096 px)")


PEAK_PROBE = """import runpy, sys
sys.argv = ["rsir", *sys.argv[1:]]
try:
    runpy.run_module("rsir_qgis_plugin", run_name="__main__")
finally:
    peak = [l for l in open("/proc/self/status") if l.startswith("VmPeak")][0].split()[1]
    print(f"VMPEAK {int(peak) * 1024}", file=sys.stderr)
"""


def test_a_huge_batch_size_under_an_address_space_limit_is_bounded_with_a_note(tmp_path, tiny_model, town_crop):
    """576 windows of the 64 px model at --batch-size 4096, under an address-space limit 256 MB above what
    a build at the default batch size peaks at here: it exhausted the limit (onnxruntime's arena kept a
    576-tile batch) and failed loading faiss ("missing faiss-cpu"), or crashed."""
    args = ["index", "build", tmp_path / "base", town_crop, "--model", tiny_model, "--tile-size", 16,
            "--stride", 16]
    baseline = subprocess.run([sys.executable, "-c", PEAK_PROBE, *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
    assert baseline.returncode == 0, baseline.stderr
    peak = int(baseline.stderr.split("VMPEAK ")[1])
    limit = peak + 256 * 2 ** 20
    done = run_cli("index", "build", tmp_path / "idx", town_crop, "--model", tiny_model, "--tile-size", 16,
                   "--stride", 16, "--batch-size", 4096, limits=[(resource.RLIMIT_AS, limit)], timeout=300)
    assert done.returncode == 0, f"limit {limit >> 20} MB: {done.stderr[-3000:]}"
    notes = [line for line in done.stderr.splitlines() if line.startswith("rsir: note:")]
    assert len(notes) == 1 and "a batch of 4096 tiles of 64 px would need about" in notes[0], done.stderr
    with IndexReader(tmp_path / "idx") as reader:
        assert reader.size == 576
