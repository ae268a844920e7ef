"""A tiny builder for the ONNX function bodies of the forms (standard opset-18 nodes)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def const_node(name: str, array: np.ndarray) -> ir.Node:
    return ir.Node("", "Constant", [], [ir.AttrTensor("value", ir.tensor(np.asarray(array), name=name))],
                   name=name)


class Builder:
    """Builds body nodes one by one; ``b.op("Add", x, y)`` returns the output value."""

    def __init__(self) -> None:
        self.nodes: list[ir.Node] = []

    def op(self, op_type: str, *inputs: ir.Value, **attrs) -> ir.Value:
        attributes = []
        for key, value in attrs.items():
            if isinstance(value, int):
                attributes.append(ir.AttrInt64(key, value))
            elif isinstance(value, (list, tuple)):
                attributes.append(ir.AttrInt64s(key, list(value)))
            elif isinstance(value, str):
                attributes.append(ir.AttrString(key, value))
            else:
                raise TypeError(value)
        node = ir.Node("", op_type, list(inputs), attributes, name=f"n{len(self.nodes)}")
        self.nodes.append(node)
        return node.outputs[0]

    def const(self, array) -> ir.Value:
        node = const_node(f"c{len(self.nodes)}", np.asarray(array))
        self.nodes.append(node)
        return node.outputs[0]

    def i64(self, *values: int) -> ir.Value:
        """A 1-D int64 constant."""
        return self.const(np.array(values, np.int64))


def body_prefix(b: Builder, dims: ir.Value) -> tuple[ir.Value, ir.Value]:
    """The nodes every body starts with: ``nk = dims[0:2]`` and an int64 ``[0]`` constant."""
    nk = b.op("Slice", dims, b.const(np.array([0], np.int64)), b.const(np.array([2], np.int64)))
    return nk, b.const(np.array([0], np.int64))
