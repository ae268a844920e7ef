"""Small readers of static shapes and node attributes used by the channel analysis (None when unknown)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from sparseforge.ir.weights import constant_array


def shape(value: ir.Value) -> list[int] | None:
    if value.shape is None or not value.shape.is_static():
        return None
    return [int(d) for d in value.shape]


def rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def dim(value: ir.Value, axis: int) -> int | None:
    s = value.shape
    if s is None or axis < 0 or axis >= len(s):
        return None
    d = s[axis]
    return int(d) if isinstance(d, int) else None


def ints(node: ir.Node, name: str) -> list[int]:
    attr = node.attributes.get(name)
    return [] if attr is None else [int(v) for v in attr.value]


def attr_str(node: ir.Node, name: str) -> str:
    attr = node.attributes.get(name)
    if attr is None:
        return ""
    v = attr.value
    return v.decode() if isinstance(v, bytes) else str(v)


def conv_unpadded(node: ir.Node) -> bool:
    auto_pad = attr_str(node, "auto_pad")
    if auto_pad not in ("", "NOTSET", "VALID"):
        return False
    return all(p == 0 for p in ints(node, "pads"))


def reduce_axes(node: ir.Node, rank_: int | None) -> list[int] | None:
    """Non-negative reduced axes; None when unknown or "all axes"."""
    if rank_ is None:
        return None
    axes: list[int] | None
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        array = constant_array(node.inputs[1])
        axes = None if array is None else [int(a) for a in array.reshape(-1)]
    elif "axes" in node.attributes:
        axes = ints(node, "axes")
    else:
        return None  # all axes (or noop_with_empty_axes): treat as mixing channels
    if axes is None:
        return None
    return [a + rank_ if a < 0 else a for a in axes]


def pads_keep_axis(node: ir.Node, axis: int, rank_: int | None) -> bool:
    """Whether Pad leaves ``axis`` unpadded."""
    if rank_ is None:
        return False
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        pads = constant_array(node.inputs[1])
        if pads is None:
            return False
        pads = [int(p) for p in pads.reshape(-1)]
        axes_in = node.inputs[3] if len(node.inputs) > 3 else None
        if axes_in is not None:
            axes = constant_array(axes_in)
            if axes is None:
                return False
            axes = [int(a) + rank_ if a < 0 else int(a) for a in axes.reshape(-1)]
            n = len(axes)
            return all(not (a == axis and (pads[k] or pads[k + n])) for k, a in enumerate(axes))
    else:
        pads = ints(node, "pads")
    n = len(pads) // 2
    return axis >= n or (pads[axis] == 0 and pads[axis + n] == 0)


def resize_keeps_channels(node: ir.Node, x: ir.Value, axis: int) -> bool:
    y = node.outputs[0]
    return dim(x, axis) is not None and dim(x, axis) == dim(y, axis)


def np_dtype(value: ir.Value) -> np.dtype:
    try:
        return np.dtype(value.dtype.numpy())
    except Exception:
        return np.dtype(np.float32)


def onnx_dtype(array: np.ndarray) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
