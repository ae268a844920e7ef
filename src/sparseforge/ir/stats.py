"""Model statistics: parameters (initializer elements of every numeric dtype), FLOPs and serialized size.

FLOPs count ``2 x multiply-adds`` of MatMul, Gemm and Conv (the ops that dominate inference), from static
shapes; ``nonzero_flops`` counts only multiply-adds with a nonzero constant weight (what a sparse kernel does).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from sparseforge.ir.weights import view_of


@dataclasses.dataclass
class ModelStats:
    parameters: int
    flops: int
    nonzero_flops: int
    size_bytes: int
    nodes: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _static(value: ir.Value | None) -> list[int] | None:
    if value is None or value.shape is None or not value.shape.is_static():
        return None
    return [int(d) for d in value.shape]


def node_macs(node: ir.Node) -> tuple[int, int]:
    """(dense, nonzero-weight) multiply-adds of a MatMul/Gemm/Conv node; (0, 0) for other ops or unknown shapes."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in ("MatMul", "Gemm", "Conv"):
        return 0, 0
    out = _static(node.outputs[0])
    if out is None:
        return 0, 0
    view = view_of(node)
    if node.op_type == "Conv":
        w = _static(node.inputs[1])
        if w is None:
            return 0, 0
        per_output = int(np.prod(w[1:]))
        dense = int(np.prod(out)) * per_output
        if view is None:
            return dense, dense
        mat = view.matrix()
        positions = int(np.prod(out)) // max(out[1], 1)  # batch x spatial positions
        return dense, positions * int(np.count_nonzero(mat))
    a, b = _static(node.inputs[0]), _static(node.inputs[1])
    if a is None or b is None:
        return 0, 0
    if node.op_type == "Gemm":
        trans_a = int(node.attributes["transA"].value) if "transA" in node.attributes else 0
        k = a[0] if trans_a else a[1]
    else:
        k = a[-1]
    dense = int(np.prod(out)) * int(k)
    if view is None:
        return dense, dense
    mat = view.matrix()
    rows_total = int(np.prod(out)) // max(mat.shape[0], 1)
    return dense, rows_total * int(np.count_nonzero(mat))


def parameter_count(model: ir.Model) -> int:
    """Elements of every numeric initializer, of any dtype (int8/uint8 quantized weights, their scales and zero
    points included); boolean masks and strings are not parameters."""
    total = 0
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is None:
            continue
        dtype = tensor.dtype
        if dtype in (ir.DataType.BOOL, ir.DataType.STRING, ir.DataType.UNDEFINED):
            continue
        total += int(np.prod(tensor.shape.numpy())) if tensor.shape is not None else 0
    return total


def model_stats(model: ir.Model, size_bytes: int | None = None) -> ModelStats:
    dense = nonzero = 0
    for node in model.graph:
        d, nz = node_macs(node)
        dense += d
        nonzero += nz
    if size_bytes is None:
        size_bytes = ir.to_proto(model).ByteSize()
    return ModelStats(parameter_count(model), 2 * dense, 2 * nonzero, int(size_bytes), len(model.graph))
