"""Cross-layer fusion plans on the ONNX graph the importer converts: a 1x1 expansion and the depthwise conv after it.

An inverted-residual block reads ``x -> 1x1 conv (-> act1) -> depthwise k x k conv (-> act2)``. When the 1x1 conv is
a sparse ``ai.sparseforge`` op, its (optional) activation has been fused into it (``importer._fused_activation``)
and the next node is a depthwise ``Conv`` with constant weights, the importer may emit one fused kernel for the
pair (:mod:`.kernels.expand_depthwise`), whose output stands for the depthwise conv's (or its activation's)
output. The plan is only a candidate: the importer fuses it when the 1x1 conv gets the NCHWc kernel and
:func:`worthwhile` holds, and then absorbs the depthwise conv and its activation; otherwise they convert as usual.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import numpy_helper

from sparseforge.ir import keys, ops


#: Fuse only when an image row holds this many vectors of channels-last positions at least: the fused kernel
#: expands row by row, and narrower rows leave its panel tiles too short (MobileNetV2 at 90%, 1 thread, AVX2:
#: fused 1.2-1.7x faster than the two kernels at 112-28 pixels wide, 1.5-2x slower at 14 and 7).
MIN_ROW_VECTORS = 4


def worthwhile(x_shape, lanes: int) -> bool:
    """Whether fusing pays for an expansion input ``(B, C, H, W)`` at ``lanes`` float32 lanes."""
    return -(-int(x_shape[3]) // int(lanes)) >= MIN_ROW_VECTORS


@dataclasses.dataclass(frozen=True)
class DepthwisePlan:
    """The depthwise conv ``node`` that follows a sparse 1x1 conv: weight ``[C, 1, KH, KW]``, bias ``[C]`` or None,
    strides, pads (top, left, bottom, right), the activation after it and the nodes that compute that activation
    (absorbed with it), and the depthwise conv's output (what the absorbed activation nodes alias)."""

    node: str
    weight: np.ndarray
    bias: np.ndarray | None
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    activation: str
    activation_nodes: tuple[str, ...]
    output: str


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _depthwise_geometry(node: onnx.NodeProto, weight: np.ndarray):
    """(strides, pads) of a depthwise Conv node this fusion supports, else None."""
    if weight.ndim != 4 or weight.shape[1] != 1 or int(_attr(node, "group", 1)) != weight.shape[0]:
        return None
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID"):
        return None
    kh, kw = weight.shape[2:]
    if tuple(_attr(node, "kernel_shape", [kh, kw])) != (kh, kw) or any(d != 1 for d in _attr(node, "dilations", [1, 1])):
        return None
    strides = tuple(int(s) for s in _attr(node, "strides", [1, 1]))
    pads = tuple(int(p) for p in _attr(node, "pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else (0, 0, 0, 0)
    if len(strides) != 2 or len(pads) != 4:
        return None
    top, left, bottom, right = pads
    if min(pads) < 0 or strides[0] > kh or max(top, bottom) >= kh or max(left, right) >= kw:
        return None
    return strides, pads


def plan_depthwise(graph: onnx.GraphProto, fused: dict[str, str], absorbed: dict[str, str], match_activation
                   ) -> dict[str, DepthwisePlan]:
    """{sparse 1x1 conv node name: the depthwise conv it may absorb}. ``fused``/``absorbed``: the activation
    fusion plan (sparse node -> activation, absorbed node -> sparse output); ``match_activation(users, out, inits,
    consumers, graph_outputs)`` matches an activation after a tensor (the importer's)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    inits = {t.name: t for t in graph.initializer}
    # the tensor each sparse node's (fused) activation leaves: the last absorbed node's output
    tail: dict[str, str] = {}
    for node in graph.node:
        if node.domain == keys.DOMAIN and node.op_type in ops.OP_TYPES and ops.op_format(node.op_type)[1] == "conv1x1":
            tail[node.output[0]] = node.output[0]
    by_output = {n.output[0]: n for n in graph.node if n.domain == keys.DOMAIN}
    for node in graph.node:
        if node.name in absorbed and node.output[0] not in graph_outputs:
            src = absorbed[node.name]
            if src in tail and (len(consumers.get(src, [])) == 1 or node.op_type == "Mul"):
                tail[src] = node.output[0]
    plans: dict[str, DepthwisePlan] = {}
    for src, out in tail.items():
        sparse = by_output[src]
        users = consumers.get(out, [])
        if out in graph_outputs or len(users) != 1:
            continue
        dw = users[0]
        if dw.op_type != "Conv" or dw.domain not in ("", "ai.onnx") or dw.input[0] != out:
            continue
        if len(dw.input) < 2 or dw.input[1] not in inits or (len(dw.input) > 2 and dw.input[2]
                                                               and dw.input[2] not in inits):
            continue
        weight = numpy_helper.to_array(inits[dw.input[1]])
        if weight.dtype != np.float32:
            continue
        geometry = _depthwise_geometry(dw, weight)
        if geometry is None:
            continue
        bias = numpy_helper.to_array(inits[dw.input[2]]) if len(dw.input) > 2 and dw.input[2] else None
        act, act_nodes = "none", ()
        dw_users = consumers.get(dw.output[0], [])
        if dw.output[0] not in graph_outputs and len(dw_users) in (1, 2):
            act, eaten = match_activation(dw_users, dw.output[0], inits, consumers, graph_outputs)
            if act is None or any(n.name in absorbed for n in eaten):
                act, eaten = "none", []
            act_nodes = tuple(n.name for n in eaten)
        plans[sparse.name] = DepthwisePlan(dw.name, np.ascontiguousarray(weight), bias, *geometry, act, act_nodes,
                                           dw.output[0])
    return plans
