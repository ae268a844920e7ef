"""Normalizations TVM's importer lacks or gets wrong, per ``onnx.reference``.

* ``LayerNormalization`` with its ``Mean`` / ``InvStdDev`` outputs (TVM returned 0-d placeholders): computed in the
  stash type (float32), the statistics shaped ``X.shape[:axis] + (1,) * (rank - axis)``; with only ``Y`` requested
  TVM's fused ``layer_norm`` is kept.
* ``RMSNormalization`` over every axis (``axis = 0``: TVM raised); other axes keep TVM's ``rms_norm``.
* ``LpNormalization`` (p = 1, 2) along ``axis``; a zero norm gives 0 (not NaN), as in the reference.
* ``Softmax`` (opset >= 13) of fp16 / bf16: float32 arithmetic rounded to the input type after each step of the
  reference (``x - max``, ``exp``, the sum, the quotient), so results match it to the last place; TVM's fp16
  softmax accumulated in fp16. Other types keep TVM's converter.
"""

from __future__ import annotations

from ._util import DEFER, const, dtype, num_outputs, op, padded, relax, shape

def layer_normalization(bb, inputs, attrs):
    if num_outputs(attrs) < 2:
        return DEFER
    x, scale, bias = padded(inputs, 3)
    t = dtype(x)
    rank = len(shape(x))
    axis = int(attrs.get("axis", -1)) % rank
    axes = list(range(axis, rank))
    eps = float(attrs.get("epsilon", 1e-5))
    xu = bb.emit(op.astype(x, "float32")) if t != "float32" else x
    mean = bb.emit(op.mean(xu, axis=axes, keepdims=True))
    diff = bb.emit(op.subtract(xu, mean))
    var = bb.emit(op.mean(op.multiply(diff, diff), axis=axes, keepdims=True))
    inv = bb.emit(op.divide(const(1, "float32"), op.sqrt(op.add(var, const(eps, "float32")))))
    normalized = bb.emit(op.multiply(diff, inv))
    if t != "float32":
        normalized = bb.emit(op.astype(normalized, t))
    y = bb.emit(op.multiply(normalized, scale))
    if bias is not None:
        y = bb.emit(op.add(y, bias))
    stash = int(attrs.get("stash_type", 1))
    stat_t = "float32" if stash == 1 else t
    if stat_t != "float32":
        mean, inv = bb.emit(op.astype(mean, stat_t)), bb.emit(op.astype(inv, stat_t))
    return relax.Tuple([y, mean, inv][:num_outputs(attrs)])


def rms_normalization(bb, inputs, attrs):
    x, scale = padded(inputs, 2)
    rank = len(shape(x))
    axis = int(attrs.get("axis", -1)) % rank
    if axis != 0:
        return DEFER
    t = dtype(x)
    eps = float(attrs.get("epsilon", 1e-5))
    xu = bb.emit(op.astype(x, "float32")) if t != "float32" else x
    mean = bb.emit(op.mean(op.multiply(xu, xu), axis=list(range(rank)), keepdims=True))
    inv = bb.emit(op.divide(const(1, "float32"), op.sqrt(op.add(mean, const(eps, "float32")))))
    y = bb.emit(op.multiply(xu, inv))
    if t != "float32":
        y = bb.emit(op.astype(y, t))
    return bb.emit(op.multiply(y, scale))


def lp_normalization(bb, inputs, attrs):
    x = inputs[0]
    t = dtype(x)
    axis = int(attrs.get("axis", -1))
    p = int(attrs.get("p", 2))
    if p == 1:
        norm = bb.emit(op.sum(op.abs(x), axis=[axis], keepdims=True))
    else:
        norm = bb.emit(op.sqrt(op.sum(op.multiply(x, x), axis=[axis], keepdims=True)))
    zero = bb.emit(op.equal(norm, const(0, t)))
    safe = bb.emit(op.where(zero, const(1, t), norm))
    return bb.emit(op.where(zero, const(0, t), op.divide(x, safe)))


def softmax(bb, inputs, attrs):
    x = inputs[0]
    low = dtype(x)
    if low not in ("float16", "bfloat16") or int(attrs.get("tvm_custom", {}).get("opset", 13)) < 13:
        return DEFER
    axis = int(attrs.get("axis", -1))

    def rounded(expr):
        return bb.emit(op.astype(op.astype(expr, low), "float32"))

    xf = bb.emit(op.astype(x, "float32"))
    shifted = rounded(op.subtract(xf, op.max(xf, axis=[axis], keepdims=True)))
    e = rounded(op.exp(shifted))
    total = rounded(op.sum(e, axis=[axis], keepdims=True))
    return bb.emit(op.astype(op.divide(e, total), low))


CONVERTERS = {
    "Softmax": softmax,
    "LayerNormalization": layer_normalization,
    "RMSNormalization": rms_normalization,
    "LpNormalization": lp_normalization,
}
