"""Conv1d as a height-1 Conv2d, so 1-D convolutions get the CPU pipeline's NCHWc convolution, depthwise and 1x1
schedules (TVM's conv1d has no tuned CPU schedule: a 1x1 Conv1d ran at 7-16 GFLOPS, several times slower than the
same product as a Conv2d).

``Conv(X [B, C, T], W [O, C/g, K], bias)`` becomes ``Reshape [B, C, 1, T] -> Conv2d(W [O, C/g, 1, K],
pads (0, p0, 0, p1), strides (1, s), dilations (1, d), groups g) (+ bias) -> Reshape [B, O, T_out]``: the same
sums in the same order, so exact. Other ranks, ``auto_pad`` other than ``NOTSET``/``VALID`` and non-float inputs
go to TVM's converter, and so do kernels longer than :data:`MAX_TAPS` (the depthwise NCHWc schedule unrolls
the taps: a 2048-tap kernel took minutes to compile; long convolutions are FftConv's business).
"""

from __future__ import annotations

from ._util import DEFER, attr_str, dtype, op, shape

#: Longest kernel lowered as a Conv2d.
MAX_TAPS = 64


def conv(bb, inputs, attrs):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if len(shape(x)) != 3 or len(shape(w)) != 3 or dtype(x) not in ("float32", "float16"):
        return DEFER
    if attr_str(attrs, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return DEFER
    b, c, t = shape(x)
    o, _, k = shape(w)
    if k > MAX_TAPS:
        return DEFER
    pads = [int(p) for p in attrs.get("pads", (0, 0))]
    stride = int(list(attrs.get("strides", (1,)))[0])
    dilation = int(list(attrs.get("dilations", (1,)))[0])
    x4 = bb.emit(op.reshape(x, (b, c, 1, t)))
    w4 = bb.emit(op.reshape(w, (o, shape(w)[1], 1, k)))
    y = bb.emit(op.nn.conv2d(x4, w4, strides=(1, stride), padding=(0, pads[0], 0, pads[1]),
                             dilation=(1, dilation), groups=int(attrs.get("group", 1))))
    if bias is not None:
        y = bb.emit(op.add(y, op.reshape(bias, (1, o, 1, 1))))
    return op.reshape(y, (b, o, shape(y)[3]))


CONVERTERS = {"Conv": conv}
