"""``CumSum`` and ``CumProd`` along a constant axis, with ``exclusive`` and ``reverse`` (TVM lacks CumProd and its
CumSum ignored ``reverse``); a run-time axis is refused by the op contract."""

from __future__ import annotations

from ._util import constant_value, op


def _cumulative(kind: str):
    fn = op.cumsum if kind == "sum" else op.cumprod

    def convert(bb, inputs, attrs):
        x = inputs[0]
        axis = int(constant_value(inputs[1]).reshape(-1)[0])
        exclusive = bool(int(attrs.get("exclusive", 0)))
        reverse = bool(int(attrs.get("reverse", 0)))
        if reverse:
            x = bb.emit(op.flip(x, axis))
        y = bb.emit(fn(x, axis=axis, exclusive=exclusive))
        return bb.emit(op.flip(y, axis)) if reverse else y

    return convert


CONVERTERS = {"CumSum": _cumulative("sum"), "CumProd": _cumulative("prod")}
