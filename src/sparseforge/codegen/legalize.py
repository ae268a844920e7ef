"""Legalizations that replace TVM's where its result differs from ONNX's: passed to ``LegalizeOps``.

TVM's topi starts a float max (min) reduction at the lowest (highest) *finite* value, not at ``-inf`` (``+inf``),
and arg-reductions at index -1 with that value. So ``ReduceMax`` of an all ``-inf`` row returned -3.4e38 (an
attention row masked with ``-inf`` was then not recognized as fully masked), and ``ArgMax`` of an all ``-inf`` row
returned -1. Here:

* ``relax.max`` / ``relax.min`` of a float tensor reduce from ``-inf`` / ``+inf``, the true identities, so every
  other input gives the same result as before (integers keep topi's legalization, whose identity is exact);
* ``relax.argmax`` / ``relax.argmin`` start from ``(index max, -inf / +inf)``: the first element always replaces
  the initial pair, ties keep the smallest index (ONNX's ``select_last_index=0``), also when the schedule splits the
  reduction into partial results.
"""

from __future__ import annotations

import numpy as np

from . import _tvm

te = _tvm.te
tirx = _tvm.tirx
topi = _tvm.topi


def _is_float(dtype: str) -> bool:
    return str(dtype).startswith(("float", "bfloat"))


def _axes(axis, ndim: int) -> list[int]:
    if axis is None:
        return list(range(ndim))
    axis = [axis] if isinstance(axis, (int, tirx.IntImm)) else list(axis)
    return sorted({(int(a) + ndim) % ndim if int(a) < 0 else int(a) for a in axis})


def _out_shape(shape, axes: list[int], keepdims: bool) -> list:
    return [1 if i in axes else d for i, d in enumerate(shape)] if keepdims else \
        [d for i, d in enumerate(shape) if i not in axes]


def _input_index(ndim: int, axes: list[int], keepdims: bool, index, rdoms) -> list:
    """The input element an output ``index`` reads at reduction point ``rdoms``."""
    full, j, r = [], 0, 0
    for i in range(ndim):
        if i in axes:
            full.append(rdoms[r])
            r += 1
            j += int(keepdims)
        else:
            full.append(index[j])
            j += 1
    return full


def _reduce(data, axes: list[int], keepdims: bool, combine, identity, name: str):
    shape = list(data.shape)
    rdoms = [te.reduce_axis((0, shape[a]), name=f"k{a}") for a in axes]
    reducer = te.comm_reducer(combine, identity, name=name)
    return te.compute(_out_shape(shape, axes, keepdims),
                      lambda *index: reducer(data(*_input_index(len(shape), axes, keepdims, index, rdoms)),
                                             axis=rdoms), name=name)


def _max_min(kind: str):
    inf = -np.inf if kind == "max" else np.inf
    fallback = topi.max if kind == "max" else topi.min
    op = tirx.max if kind == "max" else tirx.min

    def legalize(bb, call):
        x = call.args[0]
        dtype = x.ty.dtype
        axis = None if call.attrs.axis is None else [int(a) for a in call.attrs.axis]
        keepdims = bool(call.attrs.keepdims)
        if not _is_float(dtype):
            return bb.call_te(fallback, x, axis, keepdims)
        ndim = len(x.ty.shape)
        return bb.call_te(
            lambda data: _reduce(data, _axes(axis, ndim), keepdims, lambda a, b: op(a, b),
                                 lambda t: tirx.const(inf, t), f"exact_{kind}"),
            x, primfunc_name_hint=kind)

    return legalize


def _arg(kind: str):
    inf = -np.inf if kind == "max" else np.inf
    fallback = topi.argmax if kind == "max" else topi.argmin

    def legalize(bb, call):
        x = call.args[0]
        axis = None if call.attrs.axis is None else int(call.attrs.axis)
        keepdims = bool(call.attrs.keepdims)
        if not _is_float(x.ty.dtype):
            return bb.call_te(fallback, x, axis, keepdims)
        ndim = len(x.ty.shape)

        def better(a, b):
            return a > b if kind == "max" else a < b

        def combine(lhs, rhs):
            li, lv = lhs
            ri, rv = rhs
            keep = tirx.Or(better(lv, rv), tirx.And(lv == rv, li < ri))
            return tirx.Select(keep, li, ri), tirx.Select(keep, lv, rv)

        def identity(idx_t, val_t):
            return tirx.const(np.iinfo("int64").max, idx_t), tirx.const(inf, val_t)

        def compute_te(data):
            axes = _axes(axis, ndim)
            shape = list(data.shape)
            rdoms = [te.reduce_axis((0, shape[a]), name=f"k{a}") for a in axes]
            reducer = te.comm_reducer(combine, identity, name=f"exact_arg{kind}")

            def compute(*index):
                flat = tirx.const(0, "int64")
                for a, rd in zip(axes, rdoms):
                    flat = flat * tirx.const(int(shape[a]), "int64") + rd.var.astype("int64")
                return reducer((flat, data(*_input_index(ndim, axes, keepdims, index, rdoms))), axis=rdoms)

            idx, _ = te.compute(_out_shape(shape, axes, keepdims), compute, name=f"exact_arg{kind}")
            return idx

        return bb.call_te(compute_te, x, primfunc_name_hint=f"arg{kind}")

    return legalize


#: ``{relax op name: legalization}`` for ``relax.transform.LegalizeOps(customize_legalize_map=...)``.
LEGALIZE_MAP = {
    "relax.max": _max_min("max"),
    "relax.min": _max_min("min"),
    "relax.argmax": _arg("max"),
    "relax.argmin": _arg("min"),
}
