"""Self-attention over channels as one onnxruntime MultiHeadAttention node, for CPU speed.

The dual attention head's channel attention (training.models.functional.channel_attention) is
softmax(F F^T) F with F the (B, C, N) feature map: for EfficientNet-Lite0 at 128 px, C = 1280 channels
and N = 16 positions, so the graph materialises a (B, 1280, 1280) score tensor, runs Softmax over it
and multiplies again. On 2 CPU cores those three nodes took 52 % of the default model's time, and
quantisation cannot help them (onnxruntime's QLinearSoftmax and QLinearMatMul run slower than float32
here). The same computation is attention with query = key = value = F, one head of size N and scale 1:
onnxruntime's com.microsoft.MultiHeadAttention kernel computes it in tiles (flash attention on CPU,
onnxruntime >= 1.19) without the score tensor, about 3x faster, to float reassociation.
"""
from __future__ import annotations

import onnx
from onnx import helper

MS_DOMAIN = "com.microsoft"


def fuse_channel_attention(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with each MatMul(F, Transpose(F, [0, 2, 1])) -> Softmax(last axis) -> MatMul(., F)
    replaced by MultiHeadAttention(F, F, F; one head, scale 1); and how many were replaced."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    producer = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    replace, drop = {}, set()
    for scores in graph.node:
        if scores.op_type != "MatMul":
            continue
        features, transposed = scores.input
        transpose = producer.get(transposed)
        if (transpose is None or transpose.op_type != "Transpose" or transpose.input[0] != features
                or _ints(transpose, "perm") != [0, 2, 1]):
            continue
        after = consumers.get(scores.output[0], [])
        if len(after) != 1 or after[0].op_type != "Softmax" or _int(after[0], "axis", -1) not in (-1, 2):
            continue
        softmax = after[0]
        after = consumers.get(softmax.output[0], [])
        if (len(after) != 1 or after[0].op_type != "MatMul"
                or list(after[0].input) != [softmax.output[0], features]):
            continue
        if {scores.output[0], softmax.output[0]} & graph_outputs:
            continue
        weighted = after[0]
        replace[id(scores)] = helper.make_node(
            "MultiHeadAttention", [features, features, features], [weighted.output[0]], domain=MS_DOMAIN,
            num_heads=1, scale=1.0, name=f"{scores.name or weighted.output[0]}/fused_attention")
        drop |= {id(softmax), id(weighted)}
        if len(consumers[transposed]) == 1 and transposed not in graph_outputs:
            drop.add(id(transpose))
    if not replace:
        return out, 0
    nodes = [replace.get(id(node), node) for node in graph.node if id(node) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(entry.domain == MS_DOMAIN for entry in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return out, len(replace)


def _ints(node, name: str) -> list[int] | None:
    for attribute in node.attribute:
        if attribute.name == name:
            return list(helper.get_attribute_value(attribute))
    return None


def _int(node, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(helper.get_attribute_value(attribute))
    return default
