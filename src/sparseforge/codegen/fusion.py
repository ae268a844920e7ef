"""Cross-layer fusion plans on the ONNX graph the importer converts: a 1x1 expansion and the depthwise conv after it,
and the two sparse Linears of an MLP.

An inverted-residual block reads ``x -> 1x1 conv (-> act1) -> depthwise k x k conv (-> act2)``. When the 1x1 conv is
a sparse ``ai.sparseforge`` op (its activation fused into it by ``importer._fused_activation``) or a standard 1x1
``Conv`` with constant weights (:func:`plan_dense_expansions`), and the next node is a depthwise ``Conv`` with
constant weights, the importer may emit one fused kernel for the pair (:mod:`.kernels.expand_depthwise`), whose
output stands for the depthwise conv's (or its activation's) output. The plan is only a candidate: the importer
fuses it when the 1x1 conv gets the NCHWc kernel and :func:`worthwhile` holds, and then absorbs the depthwise conv
and its activation; otherwise they convert as usual.

A transformer MLP reads ``x -> sparse MatMul (-> act) -> sparse MatMul``: :func:`plan_mlps` pairs them, and the
importer emits :mod:`.kernels.mlp`'s fused kernel for the pair where :func:`mlp_worthwhile` holds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import numpy_helper

from sparseforge.ir import keys, ops


#: Fuse only when an image row holds this many vectors of channels-last positions at least: the fused kernel
#: expands row by row, and narrower rows leave its panel tiles too short (AVX2, pairs of MobileNetV2 against the
#: two kernels: at 90% sparsity fused 1.2-1.7x faster at 112-28 pixels wide, 1.5-2x slower at 14 and 7; dense,
#: after the dense 1x1 kernel's input-channel unroll and tile-rate policy, fused 1.15-2x faster at 112-28 wide,
#: 0.86-1.0x at 14 at 1 thread and 0.55-0.89x at 2).
MIN_ROW_VECTORS = 4
#: Depthwise kernels the fusion pays for: 3x3 (1.2-1.9x over the two kernels on MobileNetV2/V3 blocks); 5x5 ones
#: measured 0.87-1.0x (EfficientNet-B0 / MobileNetV3 geometries), so they stay apart.
KERNELS = frozenset({(3, 3)})
#: Activations cheap enough to fuse: with SiLU / sigmoid the fused kernel is compute bound and pays the
#: activation in full, which the two memory-bound kernels partly hide (EfficientNet-B0 blocks: 0.92-1.19x, no
#: gain in the model), so such pairs stay apart.
CHEAP_ACTIVATIONS = frozenset({"none", "relu", "relu6", "hardswish"})
#: Block shape of a dense expansion weight in the fused kernel (every block stored): 4 rows share each load of
#: the transposed input tile (measured on Zen 3 at 1 and 2 threads: within 10% of the best of 4x1 / 8x1 / CSR,
#: and 1.3-1.9x faster than the dense NCHWc conv plus the depthwise kernel on MobileNetV2's 112-28 wide blocks).
DENSE_BLOCK = (4, 1)


def worthwhile(x_shape, lanes: int, plan: DepthwisePlan, expansion_activation: str) -> bool:
    """Whether fusing pays for an expansion input ``(B, C, H, W)`` at ``lanes`` float32 lanes (sparse or dense
    expansion weight), followed by ``plan``'s depthwise conv, the expansion's own activation being
    ``expansion_activation``."""
    return (-(-int(x_shape[3]) // int(lanes)) >= MIN_ROW_VECTORS and tuple(plan.weight.shape[2:]) in KERNELS
            and {expansion_activation, plan.activation} <= CHEAP_ACTIVATIONS)


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
    if (tuple(_attr(node, "kernel_shape", [kh, kw])) != (kh, kw)
            or any(d != 1 for d in _attr(node, "dilations", [1, 1]))):
        return None
    strides = tuple(int(s) for s in _attr(node, "strides", [1, 1]))
    pads = tuple(int(p) for p in _attr(node, "pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else (0, 0, 0, 0)
    if len(strides) != 2 or len(pads) != 4:
        return None
    top, left, bottom, right = pads
    if min(pads) < 0 or strides[0] > kh or max(top, bottom) >= kh or max(left, right) >= kw:
        return None
    return strides, pads


@dataclasses.dataclass(frozen=True)
class DenseExpansion:
    """A standard 1x1 ``Conv`` (constant ``weight`` ``[C, Cin]``, ``bias`` or None) with the activation after it
    (and the nodes computing it) and the depthwise conv that follows: fused like a sparse expansion, with the
    dense weight run as a BSR ``r x 1`` operand with every block present. ``output``: the conv's output."""

    node: str
    weight: np.ndarray
    bias: np.ndarray | None
    activation: str
    activation_nodes: tuple[str, ...]
    output: str
    depthwise: DepthwisePlan


class _Graph:
    def __init__(self, graph: onnx.GraphProto):
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}
        self.inits = {t.name: t for t in graph.initializer}

    def const(self, node: onnx.NodeProto, i: int) -> np.ndarray | None:
        """Input ``i`` of ``node`` as an array if it is an initializer (None if absent or computed)."""
        if len(node.input) <= i or not node.input[i] or node.input[i] not in self.inits:
            return None
        return numpy_helper.to_array(self.inits[node.input[i]])

    def activation_after(self, out: str, match_activation, taken) -> tuple[str, list[onnx.NodeProto]]:
        """The activation computed from ``out`` alone (``"none"``, [] if there is none or its nodes are taken)."""
        users = self.consumers.get(out, [])
        if out in self.outputs or len(users) not in (1, 2):
            return "none", []
        act, eaten = match_activation(users, out, self.inits, self.consumers, self.outputs)
        if act is None or any(n.name in taken for n in eaten):
            return "none", []
        return act, eaten

    def depthwise_after(self, out: str, match_activation, taken) -> DepthwisePlan | None:
        """The depthwise conv that is the only reader of ``out``, with its activation, if the fused kernel takes
        it; ``taken``: node names already absorbed elsewhere."""
        users = self.consumers.get(out, [])
        if out in self.outputs or len(users) != 1:
            return None
        dw = users[0]
        if dw.op_type != "Conv" or dw.domain not in ("", "ai.onnx") or dw.input[0] != out or dw.name in taken:
            return None
        weight, bias = self.const(dw, 1), self.const(dw, 2)
        if weight is None or weight.dtype != np.float32 or (len(dw.input) > 2 and dw.input[2] and bias is None):
            return None
        geometry = _depthwise_geometry(dw, weight)
        if geometry is None:
            return None
        act, eaten = self.activation_after(dw.output[0], match_activation, taken)
        return DepthwisePlan(dw.name, np.ascontiguousarray(weight), bias, *geometry, act,
                             tuple(n.name for n in eaten), dw.output[0])


def _activation_tails(graph: onnx.GraphProto, g: _Graph, absorbed: dict[str, str], kinds: set[str]
                      ) -> dict[str, str]:
    """{output of a sparse node of a kind in ``kinds``: the tensor its (fused) activation leaves}: the last absorbed
    activation node's output, or the node's own output when it has no activation."""
    tail: dict[str, str] = {}
    for node in graph.node:
        if node.domain == keys.DOMAIN and node.op_type in ops.OP_TYPES and ops.op_format(node.op_type)[1] in kinds:
            tail[node.output[0]] = node.output[0]
    for node in graph.node:
        if node.name in absorbed and node.output[0] not in g.outputs:
            src = absorbed[node.name]
            if src in tail and (len(g.consumers.get(src, [])) == 1 or node.op_type == "Mul"):
                tail[src] = node.output[0]
    return tail


def plan_depthwise(graph: onnx.GraphProto, fused: dict[str, str], absorbed: dict[str, str], match_activation
                   ) -> dict[str, DepthwisePlan]:
    """{sparse 1x1 conv node name: the depthwise conv it may absorb}. ``fused``/``absorbed``: the activation
    fusion plan (sparse node -> activation, absorbed node -> sparse output); ``match_activation(users, out, inits,
    consumers, graph_outputs)`` matches an activation after a tensor (the importer's)."""
    g = _Graph(graph)
    tail = _activation_tails(graph, g, absorbed, {"conv1x1"})
    by_output = {n.output[0]: n for n in graph.node if n.domain == keys.DOMAIN}
    plans: dict[str, DepthwisePlan] = {}
    for src, out in tail.items():
        plan = g.depthwise_after(out, match_activation, absorbed)
        if plan is not None:
            plans[by_output[src].name] = plan
    return plans


def _pointwise_weight(g: _Graph, node: onnx.NodeProto) -> np.ndarray | None:
    """``[C, Cin]`` of a plain 1x1 conv (group 1, stride 1, no padding, constant float32 weight), else None."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return None
    weight = g.const(node, 1)
    if weight is None or weight.dtype != np.float32 or weight.ndim != 4 or weight.shape[2:] != (1, 1):
        return None
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if (int(_attr(node, "group", 1)) != 1 or auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
            or any(int(v) != 1 for v in _attr(node, "strides", [1, 1]))
            or any(int(v) != 1 for v in _attr(node, "dilations", [1, 1]))
            or any(int(v) for v in _attr(node, "pads", [0, 0, 0, 0]))):
        return None
    return weight[:, :, 0, 0]


def plan_dense_expansions(graph: onnx.GraphProto, absorbed: dict[str, str], match_activation
                          ) -> dict[str, DenseExpansion]:
    """{standard 1x1 Conv node name: its fusion with the depthwise conv after it}; ``absorbed``: nodes the
    importer's activation fusion already takes (never claimed twice)."""
    g = _Graph(graph)
    plans: dict[str, DenseExpansion] = {}
    taken = set(absorbed)
    for node in graph.node:
        if node.name in taken:
            continue
        weight = _pointwise_weight(g, node)
        bias = g.const(node, 2)
        if weight is None or (len(node.input) > 2 and node.input[2] and bias is None):
            continue
        act, eaten = g.activation_after(node.output[0], match_activation, taken)
        tail = eaten[-1].output[0] if eaten else node.output[0]
        if eaten and len(eaten) == 1 and len(g.consumers.get(node.output[0], [])) != 1:
            continue  # the conv's output is read elsewhere too: it must exist
        dw = g.depthwise_after(tail, match_activation, taken | {n.name for n in eaten})
        if dw is None:
            continue
        plans[node.name] = DenseExpansion(node.name, np.ascontiguousarray(weight), bias, act,
                                          tuple(n.name for n in eaten), node.output[0], dw)
        taken |= {node.name, dw.node, *dw.activation_nodes, *(n.name for n in eaten)}
    return plans


# ------------------------------------------------------------------------------------------------ sparse MLPs

#: Weight forms the fused MLP kernel takes (panel rows of CSR or BSR).
MLP_FORMATS = frozenset({"csr", "bsr"})


@dataclasses.dataclass(frozen=True)
class MlpPlan:
    """The sparse MatMul ``node`` that is the only reader of another sparse MatMul's (activated) output: the second
    Linear of an MLP. ``fmt`` and the constant inputs ``values`` / ``indices`` / ``dims`` / ``bias`` as the importer
    wraps them; ``activation``: its own fused activation."""

    node: str
    fmt: str
    values: np.ndarray
    indices: np.ndarray
    dims: np.ndarray
    bias: np.ndarray
    activation: str


#: Fuse an MLP pair from this many rows of X (tokens) on (the fused kernel's minimum): it was faster than the two
#: kernels in every case measured (1.03-1.41x at 32-384 tokens, densities 0.1-0.3, 1 and 2 threads).
MLP_MIN_ROWS = 4


def mlp_worthwhile(m: int) -> bool:
    """Whether fusing an MLP pair pays for ``m`` rows of X."""
    return m >= MLP_MIN_ROWS


def plan_mlps(graph: onnx.GraphProto, fused: dict[str, str], absorbed: dict[str, str]) -> dict[str, MlpPlan]:
    """{first sparse MatMul node name: the second one it may absorb}: both CSR/BSR MatMuls, the second reading
    only the first's output (after the first's fused activation), nothing else reading it, constants as
    initializers. A node is in at most one pair (chains pair greedily in graph order)."""
    g = _Graph(graph)
    tail = _activation_tails(graph, g, absorbed, {"matmul"})
    nodes = {n.output[0]: n for n in graph.node if n.domain == keys.DOMAIN}
    plans: dict[str, MlpPlan] = {}
    taken: set[str] = set()
    for src, out in tail.items():
        first = nodes[src]
        users = g.consumers.get(out, [])
        if (first.name in taken or ops.op_format(first.op_type)[0] not in MLP_FORMATS or out in g.outputs
                or len(users) != 1):
            continue
        second = users[0]
        if (second.domain != keys.DOMAIN or second.op_type not in ops.OP_TYPES or second.input[0] != out
                or second.name in absorbed or second.name in taken):
            continue
        fmt, kind = ops.op_format(second.op_type)
        if kind != "matmul" or fmt not in MLP_FORMATS:
            continue
        arrays = [g.const(second, i) for i in range(1, 5)]
        if any(a is None for a in arrays):
            continue
        plans[first.name] = MlpPlan(second.name, fmt, *arrays, fused.get(second.name, "none"))
        taken.update((first.name, second.name))
    return plans
