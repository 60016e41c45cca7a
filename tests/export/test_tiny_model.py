"""tests/data/make_tiny_model.py still makes the committed tests/data/tiny_model.onnx: the same contract
and graph interface through today's exporter (the bytes may differ between torch versions)."""
import numpy as np
import onnx
import pytest

from rsir_qgis_plugin.core.model import read_model
from tests.conftest import TINY_MODEL
from tests.data import make_tiny_model

pytestmark = pytest.mark.slow  # an export through torch and its parity check


def _interface(path):
    """Inputs and outputs (name, element type, shape) and the number of weights of an ONNX graph."""
    graph = onnx.load(str(path)).graph

    def described(values):
        return [(v.name, v.type.tensor_type.elem_type,
                 [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]

    weights = sum(int(np.prod(t.dims)) for t in graph.initializer)
    return described(graph.input), described(graph.output), weights


def test_the_script_reproduces_the_committed_model(tmp_path):
    made = make_tiny_model.make(tmp_path / "tiny_model.onnx")
    assert read_model(made).contract == read_model(TINY_MODEL).contract == make_tiny_model.CONTRACT
    assert _interface(made) == _interface(TINY_MODEL)
