"""ONNX ``Attention`` (opsets 23-25) as Relax ops, following ``onnx.reference.ops.op_attention``.

TVM's converter needs ``num_heads`` attributes the 4-D form does not have, and the function body's expansion gave
NaN for fully masked rows. Here: 3-D (``q_num_heads``/``kv_num_heads``) and 4-D inputs, the past/present KV cache,
boolean and additive masks (shorter than the KV sequence: padded as ONNX says), ``is_causal`` (bottom-right aligned
with the cache or with ``nonpad_kv_seqlen``), sliding windows (opset 25), grouped-query attention, ``scale``,
``softcap``, ``softmax_precision`` and every ``qk_matmul_output_mode``. The softmax is the reference's safe one (a
row that is all ``-inf`` gives zeros), and rows whose bias masks every key are zeroed before ``P @ V``.

Masks that depend only on static shapes (causal, windows without ``nonpad_kv_seqlen``) are NumPy constants.
"""

from __future__ import annotations

import numpy as np
import onnx

from ._util import const, dtype, is_neg_inf, num_outputs, op, padded, relax, shape

_QK_WITH_BIAS = 2
_QK_AFTER_SOFTMAX = 3


def _to_heads(bb, x, heads: int):
    b, s, hidden = shape(x)
    x = bb.emit(op.reshape(x, (b, s, heads, hidden // heads)))
    return bb.emit(op.permute_dims(x, (0, 2, 1, 3)))


def _offset_mask(q_len: int, kv_len: int, offset, allowed_fn, t: str, bb):
    """``0`` where ``allowed_fn(diff = i + offset - j)`` holds, ``-inf`` elsewhere.

    ``offset`` is an int (a (q, kv) NumPy constant results) or a (batch,) int64 tensor expression (the result is
    (batch, 1, q, kv))."""
    i = np.arange(q_len).reshape(q_len, 1)
    j = np.arange(kv_len).reshape(1, kv_len)
    if isinstance(offset, int):
        allowed = allowed_fn(i + offset - j)
        return const(np.where(allowed, 0, -np.inf), t)
    off = bb.emit(op.reshape(offset, (-1, 1, 1)))
    diff = bb.emit(op.subtract(op.add(const(i, "int64"), off), const(j, "int64")))
    allowed = bb.emit(allowed_fn(diff))
    mask = bb.emit(op.where(allowed, const(0, t), const(-np.inf, t)))
    return bb.emit(op.expand_dims(mask, 1))


def _causal_allowed(diff):
    if isinstance(diff, np.ndarray):
        return diff >= 0
    return op.greater_equal(diff, const(0, "int64"))


def _window_allowed(left: int, right: int):
    def allowed(diff):
        if isinstance(diff, np.ndarray):
            ok = np.ones(diff.shape, bool)
            if left >= 0:
                ok &= diff <= left
            if right >= 0:
                ok &= -diff <= right
            return ok
        ok = None
        if left >= 0:
            ok = op.less_equal(diff, const(left, "int64"))
        if right >= 0:
            r = op.less_equal(op.negative(diff), const(right, "int64"))
            ok = r if ok is None else op.logical_and(ok, r)
        return ok

    return allowed


def _pad_mask(bb, mask, kv_len: int):
    """Pad the last axis of ``mask`` to ``kv_len`` with False / -inf (ONNX: shorter masks are padded)."""
    mshape = shape(mask)
    pad = kv_len - mshape[-1]
    if pad <= 0:
        return mask
    t = dtype(mask)
    fill = np.zeros(mshape[:-1] + (pad,), bool) if t == "bool" else np.full(mshape[:-1] + (pad,), -np.inf)
    return bb.emit(op.concat([mask, const(fill, t)], axis=-1))


def _bool_to_bias(bb, mask, t: str):
    return bb.emit(op.where(mask, const(0, t), const(-np.inf, t)))


def _safe_softmax(bb, x):
    """Softmax over the last axis; a row that is all ``-inf`` gives zeros (ONNX reference's ``_softmax``)."""
    t = dtype(x)
    m = bb.emit(op.max(x, axis=[-1], keepdims=True))
    safe = bb.emit(op.where(is_neg_inf(bb, m), const(0, t), m))
    e = bb.emit(op.exp(op.subtract(x, safe)))
    s = bb.emit(op.sum(e, axis=[-1], keepdims=True))
    s = bb.emit(op.where(op.equal(s, const(0, t)), const(1, t), s))
    return bb.emit(op.divide(e, s))


def convert(bb, inputs, attrs):
    q, k, v, mask, past_k, past_v, nonpad = padded(inputs, 7)
    t = dtype(q)
    rank3 = len(shape(q)) == 3
    q_heads = attrs.get("q_num_heads")
    kv_heads = attrs.get("kv_num_heads")
    if rank3:
        q, k, v = _to_heads(bb, q, q_heads), _to_heads(bb, k, kv_heads), _to_heads(bb, v, kv_heads)
    batch, q_heads_4d, q_len, head = shape(q)
    scale = attrs.get("scale")
    scale = 1.0 / np.sqrt(head) if scale is None else float(scale)
    scale_sqrt = const(np.sqrt(np.float64(scale)), t)

    present_k = bb.emit(op.concat([past_k, k], axis=2)) if past_k is not None else k
    present_v = bb.emit(op.concat([past_v, v], axis=2)) if past_v is not None else v
    kv_len = shape(present_k)[2]
    past_len = shape(past_k)[2] if past_k is not None else 0

    bias = const(np.zeros((q_len, kv_len)), t)
    if mask is not None:
        mask = _pad_mask(bb, mask, kv_len)
    offset = past_len
    if past_k is None and nonpad is not None:
        offset = bb.emit(op.subtract(op.astype(nonpad, "int64"), const(q_len, "int64")))
    if attrs.get("is_causal", 0):
        base = bias if mask is None else (_bool_to_bias(bb, mask, t) if dtype(mask) == "bool" else mask)
        bias = bb.emit(op.add(base, _offset_mask(q_len, kv_len, offset, _causal_allowed, t, bb)))
    elif mask is not None:
        mask_bias = _bool_to_bias(bb, mask, t) if dtype(mask) == "bool" else mask
        bias = bb.emit(op.add(bias, mask_bias))
    left, right = int(attrs.get("left_window_size", -1)), int(attrs.get("right_window_size", -1))
    if left >= 0 or right >= 0:
        window = _offset_mask(q_len, kv_len, offset, _window_allowed(left, right), t, bb)
        bias = bb.emit(op.add(op.add(const(np.zeros((q_len, kv_len)), t), bias), window))
    if nonpad is not None:
        lengths = bb.emit(op.astype(nonpad, "int64"))
        keep = bb.emit(op.less(const(np.arange(kv_len).reshape(1, kv_len), "int64"),
                               bb.emit(op.reshape(lengths, (-1, 1)))))
        padding = bb.emit(op.where(keep, const(0, t), const(-np.inf, t)))
        bias = bb.emit(op.add(bias, op.reshape(padding, (batch, 1, 1, kv_len))))

    kk, vv = present_k, present_v
    k_heads = shape(kk)[1]
    q_heads = q_heads if q_heads is not None else q_heads_4d
    if q_heads != k_heads and q_heads % k_heads == 0:
        kk = bb.emit(op.repeat(kk, q_heads // k_heads, axis=1))
        vv = bb.emit(op.repeat(vv, q_heads // k_heads, axis=1))

    kt = bb.emit(op.permute_dims(bb.emit(op.multiply(kk, scale_sqrt)), (0, 1, 3, 2)))
    qk = bb.emit(op.matmul(op.multiply(q, scale_sqrt), kt))
    softcap = attrs.get("softcap")
    if softcap is not None and float(softcap) > 0:
        cap = const(float(softcap), t)
        qk = bb.emit(op.multiply(op.tanh(op.divide(qk, cap)), cap))
    qk_bias = bb.emit(op.add(qk, bias))
    mode = int(attrs.get("qk_matmul_output_mode", 0))
    qk_out = qk_bias if mode == _QK_WITH_BIAS else qk

    scores = qk_bias
    precision = attrs.get("softmax_precision")
    if precision is not None:
        scores = bb.emit(op.astype(scores, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(precision))).name))
    probs = _safe_softmax(bb, scores)
    bias_max = bb.emit(op.max(bias, axis=[-1], keepdims=True))
    probs = bb.emit(op.where(is_neg_inf(bb, bias_max), const(0, dtype(probs)), probs))
    if mode == _QK_AFTER_SOFTMAX:
        qk_out = probs
    qk_out = bb.emit(op.astype(qk_out, t)) if dtype(qk_out) != t else qk_out
    probs = bb.emit(op.astype(probs, t)) if dtype(probs) != t else probs

    y = bb.emit(op.matmul(probs, vv))
    if rank3:
        y = bb.emit(op.permute_dims(y, (0, 2, 1, 3)))
        b, s = shape(y)[:2]
        y = bb.emit(op.reshape(y, (b, s, -1)))
    outputs = [y, present_k, present_v, qk_out][:max(1, num_outputs(attrs))]
    return outputs[0] if len(outputs) == 1 else relax.Tuple(outputs)


CONVERTERS = {"Attention": convert}
