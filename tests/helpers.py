"""Small builders for hand-made ONNX models used across the tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper

from sparseforge.runtime.compare import compare

F32 = onnx.TensorProto.FLOAT


def vinfo(name: str, shape: Sequence[int | str] | None, dtype: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def make_model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
               outputs: Sequence[onnx.ValueInfoProto], initializers: Sequence[onnx.TensorProto] = (),
               opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def to_ir(proto: onnx.ModelProto) -> ir.Model:
    return ir.from_proto(proto)


def copy_ir(model: ir.Model) -> ir.Model:
    return ir.from_proto(ir.to_proto(model))


def assert_equivalent(reference: onnx.ModelProto | ir.Model, candidate: ir.Model | onnx.ModelProto,
                      rtol: float = 1e-5) -> None:
    result = compare(reference, candidate, rtol=rtol, runs=3)
    assert result.ok, result.to_dict()


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
