"""Issue 15: canonicalize + analyse must scale with the graph, so a quadratic step cannot come back unnoticed.

A 20,000-node graph (MatMul then a chain of Relu, the issue's reproduction; and a branchy graph where SlicesSplit,
the rewriter's multi-output pattern, is tried at every node) must `inspect` within a bound that a linear
implementation meets with a wide margin on a slow CI machine (about 2 s here) and the quadratic one missed by far
(69 s at 16,000 nodes).
"""

from __future__ import annotations

import time

import numpy as np
import onnx
import onnx_ir as ir
from helpers import init, make_model, vinfo
from onnx import helper

from sparseforge import api

NODES = 20_000
BOUND_S = 45.0


def _relu_chain(n: int) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h0"], name="fc")]
    nodes += [helper.make_node("Relu", [f"h{i}"], [f"h{i + 1}"], name=f"relu{i}") for i in range(n - 1)]
    w = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    return make_model(nodes, [vinfo("x", [1, 16])], [vinfo(f"h{n - 1}", [1, 16])], [init("W", w)])


def _add_chain(n: int) -> onnx.ModelProto:
    """MatMul then Add/Mul pairs with distinct constants: nothing folds, every node stays."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h0"], name="fc")]
    inits = [init("W", np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)),
             init("c", np.full(16, 0.5, np.float32)), init("d", np.full(16, 0.999, np.float32))]
    for i in range(n - 1):
        op, const = ("Add", "c") if i % 2 == 0 else ("Mul", "d")
        nodes.append(helper.make_node(op, [f"h{i}", const], [f"h{i + 1}"], name=f"n{i}"))
    return make_model(nodes, [vinfo("x", [1, 16])], [vinfo(f"h{n - 1}", [1, 16])], inits)


def _inspect_seconds(proto: onnx.ModelProto) -> tuple[float, api.InspectResult]:
    model = ir.from_proto(proto)
    start = time.perf_counter()
    result = api.inspect(model, with_rank=False)
    return time.perf_counter() - start, result


def test_inspect_of_a_20k_relu_chain_is_not_quadratic():
    seconds, result = _inspect_seconds(_relu_chain(NODES))
    assert seconds < BOUND_S, f"inspect of a {NODES}-node chain took {seconds:.1f} s"
    assert [layer.node for layer in result.layers] == ["fc"]
    assert [n.op_type for n in result.model.graph] == ["MatMul", "Relu"]  # the chain fused, the layer name kept


def test_inspect_of_a_20k_node_graph_that_keeps_its_nodes_is_not_quadratic():
    seconds, result = _inspect_seconds(_add_chain(NODES))
    assert seconds < BOUND_S, f"inspect of a {NODES}-node graph took {seconds:.1f} s"
    assert len(list(result.model.graph)) == NODES
