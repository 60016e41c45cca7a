"""Models that load but fail at run time are refused when the Embedder is made, in one line naming the file.

Each broken model is a small real ONNX graph (3 bands, 8 px input, 4-d output) run by onnxruntime.
"""
import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rsir_qgis_plugin.core.embedder import Embedder, finite_rows, probe_tiles
from rsir_qgis_plugin.core.errors import ModelError
from rsir_qgis_plugin.core.model import ModelContract, read_model
from rsir_qgis_plugin.core.runtime import available_devices

BANDS, SIZE, DIM = 3, 8, 4
FEATURES = BANDS * SIZE * SIZE
node = helper.make_node


def weights(columns=DIM):
    matrix = np.random.default_rng(0).normal(size=(FEATURES, columns)).astype(np.float32)
    return numpy_helper.from_array(matrix, "W")


def const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def embed_nodes(source="x", out="y"):
    """Flatten the tile and project it to DIM values: the part every test model shares."""
    return [node("Flatten", [source], ["flat"], axis=1), node("MatMul", ["flat", "W"], [out])]


def save_model(path, nodes, initializers, input_type=TensorProto.FLOAT, batch="N", dim=DIM):
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("x", input_type, [batch, BANDS, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, "D"])], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    contract = ModelContract(name=path.stem, embedding_dim=dim, input_size=SIZE, bands=BANDS,
                             mean=(0.5,) * BANDS, std=(0.25,) * BANDS)
    for key, value in contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def refused(path, info=None) -> str:
    """The one-line ModelError that making an Embedder for this model raises."""
    with pytest.raises(ModelError) as caught:
        Embedder(info or read_model(path), "cpu")
    message = str(caught.value)
    assert message.startswith(f"{path.resolve()}: ") and "\n" not in message
    return message


def test_a_good_small_model_passes_the_probe_and_embeds(tmp_path):
    path = save_model(tmp_path / "good.onnx", embed_nodes(), [weights()])
    embedder = Embedder(read_model(path), "cpu")
    vectors = embedder.embed(probe_tiles(BANDS, SIZE))
    assert vectors.shape == (2, DIM) and finite_rows(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_bundled_default_model_passes_the_probe_where_a_user_runs_it():
    """Device auto, the plugin's and the CLI's default: on CUDA where onnxruntime lists it, else on CPU,
    with no fallback note (one means CUDA failed it). The probe does run it: a broken contract is refused."""
    info = read_model()
    embedder = Embedder(info, "auto")
    expected = "CUDAExecutionProvider" if available_devices().cuda_listed else "CPUExecutionProvider"
    assert (embedder.provider, embedder.provider_note) == (expected, "")
    dim = info.contract.embedding_dim
    wrong = dataclasses.replace(info, contract=dataclasses.replace(info.contract, embedding_dim=dim + 1))
    assert refused(info.path, wrong).endswith(f"returns {dim} values per tile but its metadata says "
                                              f"embedding_dim {dim + 1} (on one test tile)")


@pytest.mark.parametrize("dtype, name", [(TensorProto.UINT8, "uint8"), (TensorProto.FLOAT16, "float16")],
                         ids=["uint8", "float16"])
def test_a_model_wanting_uint8_or_float16_input_is_refused_by_name(tmp_path, dtype, name):
    path = save_model(tmp_path / f"{name}_input.onnx",
                      [node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT), *embed_nodes("xf")],
                      [weights()], input_type=dtype)
    with pytest.raises(ModelError, match=f"{name}_input.onnx: input is {name}, but rsir feeds float32 tiles"):
        read_model(path)
    # An Embedder given such a model some other way still refuses it on the test tile.
    good = read_model(save_model(tmp_path / "good.onnx", embed_nodes(), [weights()]))
    info = dataclasses.replace(good, path=path.resolve())
    assert "onnxruntime fails on one test tile" in refused(path, info)


def test_a_model_that_only_takes_a_batch_of_one_is_refused(tmp_path):
    fixed_one = [node("Reshape", ["x", "shape"], ["flat"]), node("MatMul", ["flat", "W"], ["y"])]
    shape = numpy_helper.from_array(np.array([1, FEATURES], np.int64), "shape")
    path = save_model(tmp_path / "batch_of_one.onnx", fixed_one, [weights(), shape])
    assert "onnxruntime fails on a batch of 2 test tiles" in refused(path)


def test_a_model_whose_output_batch_differs_from_its_input_is_refused(tmp_path):
    one_row = [*embed_nodes(out="rows"), node("ReduceMean", ["rows"], ["y"], axes=[0], keepdims=1)]
    path = save_model(tmp_path / "one_row.onnx", one_row, [weights()])
    assert "returns output of shape (1, 4) for 2 input tile(s)" in refused(path)


def test_a_model_whose_output_size_differs_from_its_metadata_is_refused(tmp_path):
    static = save_model(tmp_path / "six_d.onnx", embed_nodes(), [weights(columns=6)])
    with pytest.raises(ModelError, match="six_d.onnx: metadata says 4-d embeddings, graph outputs 6"):
        read_model(static)
    # Reshaped to (batch, -1) at run time, the size is known only once the model runs.
    nodes = [*embed_nodes(out="rows"), node("Shape", ["x"], ["batch"], start=0, end=1),
             node("Concat", ["batch", "rest"], ["shape"], axis=0),
             node("Reshape", ["rows", "shape"], ["y"])]
    rest = numpy_helper.from_array(np.array([-1], np.int64), "rest")
    path = save_model(tmp_path / "six_d_dynamic.onnx", nodes, [weights(columns=6), rest])
    assert refused(path).endswith("returns 6 values per tile but its metadata says embedding_dim 4 "
                                  "(on one test tile)")


@pytest.mark.parametrize("numerator", ["zero", "rows"])  # 0/0 is NaN, rows/0 is infinite
def test_a_model_giving_nan_or_inf_is_refused(tmp_path, numerator):
    nodes = [*embed_nodes(out="rows"), node("Mul", ["rows", "zero"], ["zero_rows"]),
             node("Div", ["zero_rows" if numerator == "zero" else "rows", "zero"], ["y"])]
    path = save_model(tmp_path / f"{numerator}_by_zero.onnx", nodes, [weights(), const("zero", 0.0)])
    assert refused(path).endswith("outputs NaN or infinite values on one test tile")


def test_a_model_giving_all_zero_embeddings_is_refused(tmp_path):
    nodes = [*embed_nodes(out="rows"), node("Mul", ["rows", "zero"], ["y"])]
    path = save_model(tmp_path / "zeros.onnx", nodes, [weights(), const("zero", 0.0)])
    assert refused(path).endswith("outputs an all-zero embedding on one test tile")


def test_a_model_mixing_tiles_of_a_batch_is_refused(tmp_path):
    # Adds the batch mean to every row, like BatchNorm exported in training mode.
    nodes = [*embed_nodes(out="rows"), node("ReduceMean", ["rows"], ["mean"], axes=[0], keepdims=1),
             node("Add", ["rows", "mean"], ["y"])]
    path = save_model(tmp_path / "batch_mixing.onnx", nodes, [weights()])
    assert "a tile's embedding changes with the other tiles of its batch" in refused(path)


@pytest.mark.parametrize("batch", [1, 4])
def test_graphs_with_a_fixed_batch_size_are_fed_padded_chunks(tmp_path, batch):
    path = save_model(tmp_path / f"fixed_{batch}.onnx", embed_nodes(), [weights()], batch=batch)
    embedder = Embedder(read_model(path), "cpu")
    tiles = np.concatenate([probe_tiles(BANDS, SIZE)] * 3)[:5]
    together = embedder.embed(tiles)
    assert together.shape == (5, DIM)
    assert np.allclose(together, np.concatenate([embedder.embed(t[None]) for t in tiles]), atol=1e-5)


def test_finite_rows_drops_only_tiles_the_model_gave_nan_for(tmp_path):
    # Scales each row by sqrt(mean of the tile + 1.5): fine for the probe's tiles, NaN for a black tile.
    nodes = [*embed_nodes(out="rows"), node("ReduceMean", ["flat"], ["level"], axes=[1], keepdims=1),
             node("Add", ["level", "offset"], ["shifted"]), node("Sqrt", ["shifted"], ["gain"]),
             node("Mul", ["rows", "gain"], ["y"])]
    path = save_model(tmp_path / "nan_on_black.onnx", nodes, [weights(), const("offset", 1.5)])
    embedder = Embedder(read_model(path), "cpu")
    tiles = np.concatenate([np.zeros((1, BANDS, SIZE, SIZE), np.uint8), probe_tiles(BANDS, SIZE)])
    vectors = embedder.embed(tiles)  # no error: dropping the bad rows is the caller's choice
    assert finite_rows(vectors).tolist() == [False, True, True]
    assert finite_rows(np.array([[1.0, 0.0], [np.inf, 0.0], [0.0, np.nan]])).tolist() == [True, False, False]
