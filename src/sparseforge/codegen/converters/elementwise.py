"""Elementwise and layout ops where TVM's converter raises or differs from ONNX, per ``onnx.reference``.

* ``Mod``: ``fmod=1`` is C's ``fmod`` (sign of the dividend; exact, libm's in float64), ``fmod=0`` the floor modulo
  (sign of the divisor; floats as NumPy's ``mod``); TVM's float path lost the ``inf``/``nan``/``0`` cases.
* ``BitShift`` with shifts outside ``[0, bits)`` (0, or the sign fill for RIGHT), as the reference.
* ``Cosh``, ``Sinh`` (TVM raised), ``Celu`` in the input's dtype (fp16 raised), ``Swish`` (``x * sigmoid(alpha x)``).
* ``IsInf`` honouring ``detect_negative`` / ``detect_positive`` (TVM ignored them).
* ``DepthToSpace`` in ``CRD`` mode (TVM's was wrong); ``EyeLike`` with its ``dtype`` (a constant: the shape is static).
* ``Pow`` of integers or mixed dtypes: computed in float64, cast to the base's dtype as ONNX's output type says.
"""

from __future__ import annotations

import numpy as np
import onnx

from .. import _tvm
from ._util import DEFER, attr_str, broadcast_shape, const, constant_value, dtype, op, shape

te = _tvm.te
tirx = _tvm.tirx


def _broadcast(bb, a, b):
    out = broadcast_shape(shape(a), shape(b))
    a = a if shape(a) == out else bb.emit(op.broadcast_to(a, out))
    b = b if shape(b) == out else bb.emit(op.broadcast_to(b, out))
    return a, b


def _scalar_dtype(x) -> str:
    return str(x.ty.dtype) if hasattr(x, "ty") else str(x.dtype)


def _c_fmod(x, y):
    """C's ``fmod`` (libm) in float64: exact, so the result rounds back to any float type unchanged."""
    t = _scalar_dtype(x)
    wide = tirx.call_pure_extern("float64", "fmod", tirx.Cast("float64", x), tirx.Cast("float64", y))
    return tirx.Cast(t, wide)


def _floor_mod(x, y):
    """NumPy's float ``mod`` (the ONNX reference for ``fmod=0``), in float64 with libm: ``fmod``, moved into the
    divisor's sign when the signs differ; a zero result takes the divisor's sign; ``y == 0`` and infinite ``x`` give
    NaN as ``fmod`` does. Exact, so rounding back to the input type changes nothing."""
    t = _scalar_dtype(x)
    xd, yd = tirx.Cast("float64", x), tirx.Cast("float64", y)
    r = tirx.call_pure_extern("float64", "fmod", xd, yd)
    zero = tirx.const(0.0, "float64")
    signed_zero = tirx.Select(yd < zero, tirx.const(-0.0, "float64"), zero)
    differ = tirx.Or(tirx.And(r < zero, yd > zero), tirx.And(r > zero, yd < zero))
    return tirx.Cast(t, tirx.Select(differ, r + yd, tirx.Select(r == zero, signed_zero, r)))


def bit_shift(bb, inputs, attrs):
    """``BitShift`` as the reference: shifts outside ``[0, bits)`` give 0 (LEFT) or the sign fill (RIGHT)."""
    a, b = _broadcast(bb, inputs[0], inputs[1])
    t = dtype(a)
    bits = int(np.iinfo(t).bits)
    left = attr_str(attrs, "direction", "LEFT") == "LEFT"
    signed = t.startswith("int")

    def compute(x, s):
        def at(*i):
            v, k = x(*i), s(*i)
            zero = tirx.const(0, t)
            inside = tirx.And(k >= zero, k < tirx.const(bits, t))
            if left:
                shifted = tirx.shift_left(v, k)
                fill = zero
            else:
                shifted = tirx.shift_right(v, k)
                fill = tirx.Select(v < zero, tirx.const(-1, t), zero) if signed else zero
            return tirx.Select(inside, shifted, fill)
        return te.compute(x.shape, at, name="bit_shift")

    return bb.emit_te(compute, a, b)


def mod(bb, inputs, attrs):
    a, b = _broadcast(bb, inputs[0], inputs[1])
    t = dtype(a)
    is_float = t.startswith(("float", "bfloat"))
    if int(attrs.get("fmod", 0)):
        fn = _c_fmod if is_float else tirx.truncmod
    elif is_float:
        fn = _floor_mod
    else:
        fn = tirx.floormod
    return bb.emit_te(lambda x, y: te.compute(x.shape, lambda *i: fn(x(*i), y(*i)), name="mod"), a, b)


def cosh(bb, inputs, attrs):
    x = inputs[0]
    half = const(0.5, dtype(x))
    return bb.emit(op.multiply(op.add(op.exp(x), op.exp(op.negative(x))), half))


def sinh(bb, inputs, attrs):
    x = inputs[0]
    half = const(0.5, dtype(x))
    return bb.emit(op.multiply(op.subtract(op.exp(x), op.exp(op.negative(x))), half))


def celu(bb, inputs, attrs):
    x = inputs[0]
    t = dtype(x)
    alpha = float(attrs.get("alpha", 1.0))
    a = const(alpha, t)
    neg = op.multiply(a, op.subtract(op.exp(op.divide(x, a)), const(1, t)))
    return bb.emit(op.add(op.maximum(x, const(0, t)), op.minimum(const(0, t), neg)))


def swish(bb, inputs, attrs):
    x = inputs[0]
    alpha = float(attrs.get("alpha", 1.0))
    return bb.emit(op.multiply(x, op.sigmoid(op.multiply(x, const(alpha, dtype(x))))))


def is_inf(bb, inputs, attrs):
    x = inputs[0]
    neg, pos = int(attrs.get("detect_negative", 1)), int(attrs.get("detect_positive", 1))
    inf = op.isinf(x)
    if neg and pos:
        return bb.emit(inf)
    if not neg and not pos:
        return bb.emit(op.zeros(shape(x), "bool"))
    side = op.less(x, const(0, dtype(x))) if neg else op.greater(x, const(0, dtype(x)))
    return bb.emit(op.logical_and(inf, side))


def depth_to_space(bb, inputs, attrs):
    if attr_str(attrs, "mode", "DCR") != "CRD":
        return DEFER
    x = inputs[0]
    n, c, h, w = shape(x)
    b = int(attrs["blocksize"])
    y = bb.emit(op.reshape(x, (n, c // (b * b), b, b, h, w)))
    y = bb.emit(op.permute_dims(y, (0, 1, 4, 2, 5, 3)))
    return bb.emit(op.reshape(y, (n, c // (b * b), h * b, w * b)))


def eye_like(bb, inputs, attrs):
    x = inputs[0]
    t = dtype(x)
    if "dtype" in attrs:
        t = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(attrs["dtype"]))).name
    rows, cols = shape(x)
    return const(np.eye(rows, cols, k=int(attrs.get("k", 0))), t)


def one_hot(bb, inputs, attrs):
    """``OneHot`` with constant ``depth`` (any numeric type, as ``np.arange(depth)``) and ``values``: negative
    indices wrap by ``depth``, out-of-range ones match nothing (all ``off``), like the reference."""
    indices = inputs[0]
    depth, values = constant_value(inputs[1]), constant_value(inputs[2])
    if depth is None or values is None:
        return DEFER
    n = len(np.arange(np.asarray(depth).reshape(-1)[0]))
    off, on = np.asarray(values).reshape(-1)[:2]
    rank = len(shape(indices))
    axis = int(attrs.get("axis", -1))
    axis = axis + rank + 1 if axis < 0 else axis
    idx = indices if dtype(indices) == "int64" else bb.emit(op.astype(indices, "int64"))
    idx = bb.emit(op.where(op.less(idx, const(0, "int64")), op.add(idx, const(n, "int64")), idx))
    idx = bb.emit(op.expand_dims(idx, axis))
    targets = const(np.arange(n, dtype=np.int64).reshape((1,) * axis + (n,) + (1,) * (rank - axis)), "int64")
    out_dtype = np.asarray(values).dtype.name
    return bb.emit(op.where(op.equal(idx, targets), const(on, out_dtype), const(off, out_dtype)))


def power(bb, inputs, attrs):
    base, exponent = inputs[0], inputs[1]
    t = dtype(base)
    if t == dtype(exponent) and t.startswith("float"):
        return DEFER
    y = op.power(op.astype(base, "float64"), op.astype(exponent, "float64"))
    if not t.startswith("float"):
        y = op.round(y)
    return bb.emit(op.astype(y, t))


CONVERTERS = {
    "Mod": mod,
    "BitShift": bit_shift,
    "Cosh": cosh,
    "Sinh": sinh,
    "Celu": celu,
    "Swish": swish,
    "IsInf": is_inf,
    "DepthToSpace": depth_to_space,
    "EyeLike": eye_like,
    "OneHot": one_hot,
    "Pow": power,
}
