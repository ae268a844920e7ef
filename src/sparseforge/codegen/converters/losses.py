"""``NegativeLogLikelihoodLoss`` and ``SoftmaxCrossEntropyLoss`` as Relax ops (TVM's importer has neither).

Input ``(N, C, d1, ...)``, target ``(N, d1, ...)`` of class indices. Per ``onnx.reference``: the loss element is
``-x[n, target, d...]`` times the gathered class weight (0 where ``target == ignore_index``); ``mean`` divides by
the sum of the weights when there are weights (given, or implied by ``ignore_index``), else by the element count.
The gathered index is clipped into ``[0, C)`` first, as the reference does, so an ignored out-of-range target reads
a valid element whose loss is then zeroed.
"""

from __future__ import annotations

import numpy as np

from ._util import attr_str, const, dtype, num_outputs, op, padded, relax, shape


def _nll(bb, logp, target, weight, attrs, implied_weight: bool):
    t = dtype(logp)
    c = shape(logp)[1]
    reduction = attr_str(attrs, "reduction", "mean")
    ignore = attrs.get("ignore_index")
    target = bb.emit(op.astype(target, "int64"))
    index = bb.emit(op.clip(target, 0, c - 1))
    picked = bb.emit(op.gather_elements(logp, op.expand_dims(index, 1), axis=1))
    loss = bb.emit(op.negative(op.squeeze(picked, axis=[1])))
    w = None
    if weight is not None:
        w = bb.emit(op.take(weight, index, axis=0))
    elif implied_weight:
        w = const(np.ones(shape(target)), t)
    if ignore is not None:
        keep = bb.emit(op.not_equal(target, const(int(ignore), "int64")))
        if w is None:  # the ignored elements are zero, the element count stays the divisor
            loss = bb.emit(op.where(keep, loss, const(0, t)))
        else:
            w = bb.emit(op.where(keep, w, const(0, t)))
    if w is not None:
        loss = bb.emit(op.multiply(loss, w))
        if reduction == "mean":
            return bb.emit(op.divide(op.sum(loss), op.sum(w)))
    if reduction == "mean":
        return bb.emit(op.mean(loss))
    if reduction == "sum":
        return bb.emit(op.sum(loss))
    return loss


def negative_log_likelihood_loss(bb, inputs, attrs):
    x, target, weight = padded(inputs, 3)
    # the reference implies unit weights unless ignore_index == -1 (then ignored elements count in the mean)
    implied = attrs.get("ignore_index") != -1
    return _nll(bb, x, target, weight, attrs, implied_weight=implied and attrs.get("ignore_index") is not None)


def softmax_cross_entropy_loss(bb, inputs, attrs):
    x, target, weight = padded(inputs, 3)
    m = bb.emit(op.max(x, axis=[1], keepdims=True))
    e = bb.emit(op.exp(op.subtract(x, m)))
    logp = bb.emit(op.log(op.divide(e, op.sum(e, axis=[1], keepdims=True))))
    loss = _nll(bb, logp, target, weight, attrs, implied_weight=attrs.get("ignore_index") is not None)
    if num_outputs(attrs) > 1:
        return relax.Tuple([loss, logp])
    return loss


CONVERTERS = {
    "NegativeLogLikelihoodLoss": negative_log_likelihood_loss,
    "SoftmaxCrossEntropyLoss": softmax_cross_entropy_loss,
}
