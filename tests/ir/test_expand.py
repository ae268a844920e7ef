"""Ops defined as ONNX functions expand into their bodies; the expanded model computes the same in ORT."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper

from sparseforge.ir.expand import expand_functions


def _run(proto: onnx.ModelProto, feeds: dict) -> list:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_function_ops_expand_and_match_ort() -> None:
    nodes = [helper.make_node("Celu", ["x"], ["a"], alpha=0.7),
             helper.make_node("MeanVarianceNormalization", ["a"], ["y"], axes=[0, 2, 3])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 5])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model = ir.serde.deserialize_model(proto)
    counts = expand_functions(model, lambda domain, op: op != "MeanVarianceNormalization")
    assert dict(counts) == {"MeanVarianceNormalization": 1}
    assert not expand_functions(model, lambda domain, op: False)  # Celu's body is written for opset 12: kept
    expanded = ir.to_proto(model)
    assert [n.op_type for n in expanded.graph.node].count("Celu") == 1
    assert "MeanVarianceNormalization" not in {n.op_type for n in expanded.graph.node}
    assert all(o.domain in ("", "ai.onnx") for o in expanded.opset_import)
    onnx.checker.check_model(expanded, full_check=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(expanded, {"x": x})[0], _run(proto, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_lowered_and_plain_ops_are_left_alone() -> None:
    nodes = [helper.make_node("MatMul", ["x", "x"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert not expand_functions(model, lambda domain, op: True)
    assert not expand_functions(model, lambda domain, op: op == "Relu")  # MatMul has no function body
    assert [n.op_type for n in model.graph] == ["MatMul", "Relu"]
