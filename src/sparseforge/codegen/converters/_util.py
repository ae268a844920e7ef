"""Helpers shared by the converters: static shapes, constants, dtype-aware scalars."""

from __future__ import annotations

import numpy as np

from .. import _tvm

relax = _tvm.relax
op = relax.op


#: What a converter returns to let TVM's own converter handle the node.
DEFER = object()


def shape(expr) -> tuple[int, ...]:
    """The static shape of a tensor expression (sparseforge compiles static shapes only)."""
    return tuple(int(d) for d in expr.ty.shape)


def dtype(expr) -> str:
    return str(expr.ty.dtype)


def const(value, dtype_: str):
    return relax.const(np.asarray(value, dtype=dtype_), dtype_)


def constant_value(expr) -> np.ndarray | None:
    """The NumPy value of a constant input (an initializer or a folded Constant), else None."""
    if isinstance(expr, _tvm.tvm.ir.Constant):  # relax.const(...) is an ir.GenericConst in TVM 0.27
        return expr.value.numpy()
    return None


def padded(inputs, n: int) -> list:
    """``inputs`` as a list of length ``n`` (trailing omitted optional inputs as None)."""
    items = list(inputs)
    return items + [None] * (n - len(items))


def num_outputs(attrs) -> int:
    return int(attrs.get("tvm_custom", {}).get("num_outputs", 1))


def attr_str(attrs, name: str, default: str) -> str:
    value = attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def is_neg_inf(bb, x):
    return bb.emit(op.logical_and(op.isinf(x), op.less(x, const(0, dtype(x)))))


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(d) for d in np.broadcast_shapes(*shapes))
