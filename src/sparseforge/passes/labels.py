"""Index labels pushed through data-movement ops with NumPy: which source element ends up where.

A label array holds, at each position of a value, an integer naming where that element came from (a projection
channel, a head, a time step). :func:`move` applies one movement op to it, so a rewrite learns a layout by
following the graph instead of assuming it (attention heads, spectral convolution windows).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.weights import constant_array

#: Ops :func:`move` understands besides elementwise ones that do not move data (Identity, Cast, Dropout,
#: Mul/Div by a scalar).
MOVEMENT_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Gather", "Slice", "Split"})


def move(node: ir.Node, labels: np.ndarray, out: ir.Value, out_shape: tuple[int, ...]) -> np.ndarray:
    """``node`` applied to ``labels`` (its output ``out`` of static shape ``out_shape``); ValueError when its
    parameters are computed at run time. Ops outside :data:`MOVEMENT_OPS` leave the labels as they are."""
    op = node.op_type
    if op in ("Reshape", "Squeeze", "Unsqueeze"):
        return labels.reshape(out_shape)
    if op == "Transpose":
        perm = node.attributes["perm"].value if "perm" in node.attributes else list(range(labels.ndim))[::-1]
        return labels.transpose(list(perm))
    if op == "Gather":
        idx = constant_array(node.inputs[1])
        if idx is None:
            raise ValueError(f"Gather '{node.name}' has run-time indices")
        axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 0
        return np.take(labels, idx.astype(np.int64), axis=axis)
    if op == "Slice":
        params = [constant_array(v) if v is not None else None for v in node.inputs[1:]]
        if any(p is None for p, v in zip(params, node.inputs[1:]) if v is not None):
            raise ValueError(f"Slice '{node.name}' has run-time parameters")
        starts, ends = params[0], params[1]
        axes = params[2] if len(params) > 2 and params[2] is not None else np.arange(len(starts))
        steps = params[3] if len(params) > 3 and params[3] is not None else np.ones(len(starts), np.int64)
        index = [slice(None)] * labels.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            index[int(a) % labels.ndim] = slice(int(s), int(e), int(st))
        return labels[tuple(index)]
    if op == "Split":
        outputs = list(node.outputs)
        axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 0
        sizes = [int(o.shape[axis]) for o in outputs]
        parts = np.split(labels, np.cumsum(sizes)[:-1], axis=axis)
        return parts[outputs.index(out)]
    return labels
