"""Half-precision weight storage with float32 compute: half the file, the speed of an fp32 graph.

A fully fp16 graph runs 2-3x slower than fp32 on onnxruntime's CPU provider, which has fp16 kernels
for few operators and casts around each of the rest. Here only the stored weights are fp16: each large
float32 initializer W becomes an fp16 initializer feeding one Cast(to=float32) whose output keeps
the name W. onnxruntime folds those Casts into float32 initializers once, when it loads the model
(constant folding, on at every optimisation level above none), so inference is the fp32 graph with
fp16-rounded weights: the same rounding a fully fp16 graph has on CPU, without its cost.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Small tensors (biases, norm scales, GeM's p) stay float32: they save nothing and round worst.
MIN_ELEMENTS = 1024
SUFFIX = "__fp16"


def store_weights_fp16(model: onnx.ModelProto, min_elements: int = MIN_ELEMENTS) -> onnx.ModelProto:
    """A copy of `model` whose float32 initializers of >= min_elements values are stored as fp16."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        if np.abs(values).max(initial=0.0) >= np.finfo(np.float16).max:
            raise ValueError(f"initializer '{init.name}' holds values beyond the fp16 range")
        kept.append(numpy_helper.from_array(values.astype(np.float16), init.name + SUFFIX))
        casts.append(helper.make_node("Cast", [init.name + SUFFIX], [init.name], to=TensorProto.FLOAT,
                                      name=f"widen_{init.name}"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # topological order: the casts feed everything after them
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def has_fp16_storage(model: onnx.ModelProto) -> bool:
    """True when fp16 initializers exist and each one only feeds a Cast to float32 (fp32 compute)."""
    fp16 = {init.name for init in model.graph.initializer if init.data_type == TensorProto.FLOAT16}
    if not fp16:
        return False
    for node in model.graph.node:
        for name in node.input:
            if name in fp16:
                widened = node.op_type == "Cast" and helper.get_attribute_value(
                    next(a for a in node.attribute if a.name == "to")) == TensorProto.FLOAT
                if not widened:
                    return False
    return True


def widen_stored_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with fp16-stored weights (store_weights_fp16) turned back into float32
    initializers under their Cast's output name, and those Casts removed: the graph onnxruntime runs.

    Tools that read initializers (quantisation, above all) need the float32 weights themselves.
    Models without fp16 storage come back unchanged.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    fp16 = {init.name: init for init in graph.initializer if init.data_type == TensorProto.FLOAT16}
    widened, nodes, used = [], [], set()
    for node in graph.node:
        to = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and node.input[0] in fp16 and to == TensorProto.FLOAT:
            values = numpy_helper.to_array(fp16[node.input[0]]).astype(np.float32)
            widened.append(numpy_helper.from_array(values, node.output[0]))
            used.add(node.input[0])
        else:
            nodes.append(node)
    still_read = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name not in used or init.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(kept + widened)
    del graph.node[:]
    graph.node.extend(nodes)
    return out
