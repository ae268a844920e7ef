"""TE definitions of the NCHWc convolution kernels, and their tile policy.

Layout contract (float32; ``c`` = the SIMD width in float32 lanes, 16 on AVX-512, 8 on AVX2):

* blocked activations ``[N, ceil(C/c), H, W, c]`` (channel ``k`` at ``[:, k // c, :, :, k % c]``);
  the padding lanes past ``C`` may hold anything: reductions run over the ``C`` real input
  channels only and every other op is lane-wise, so they never reach a real channel;
* ``conv2d_nchwc``: input blocked (or plain NCHW, used when ``C_in`` is not a multiple of ``c``,
  e.g. an RGB image), weights ``Wp[ceil(OC/c), IC, KH, KW, c]`` (``Wp[o//c, i, h, w, o%c] =
  W[o, i, h, w]``, zero past ``OC``), output blocked;
* ``depthwise_nchwc`` (groups == channels): input blocked, weights ``Wp[ceil(C/c), KH, KW, c]``,
  output blocked.

Both compute an accumulator block over a padded pixel domain (clamped reads, so every register
tile is full) annotated for :class:`~.conv2d.Conv2dNCHWc` / :class:`~.depthwise.DepthwiseNCHWc`,
followed by a copy into the exact output that fused epilogues attach to. Spatial zero padding is
a separate ``pad`` block.
"""

from __future__ import annotations

from .. import _tvm
from . import _contract as C
from .kernels_dense import dense_tile_m

te = _tvm.te
tirx = _tvm.tirx


def conv_tile(ocb: int, pixels: int, lanes: int, registers: int, input_blocked: bool = True) -> tuple[int, int]:
    """``(MR, OB)``: MR output pixels x OB channel blocks per register tile, ``OB | ocb``.

    On a plain NCHW input (a network's first layer) every pixel of the tile loads one scalar through its own address
    and bounds check, and wider tiles ran slower (7x7 stride-2 3 -> 64 at 224x224: 4 x 2 3.5 ms, 5 x 2 5.2 ms,
    6 x 2 4.2 ms), so there the least padding alone decides (:func:`~.kernels_dense.dense_tile_m` with a flat rate).
    """
    budget = registers * 3 // 4
    ob = next((v for v in (3, 2, 4, 1) if ocb % v == 0 and budget // v >= 4), 1)
    rate = None if input_blocked else (lambda fill: 1.0)
    return dense_tile_m(pixels, ob * lanes, lanes, registers, rate), ob


def depthwise_tile(out_w: int, lanes: int, registers: int) -> int:
    """Output columns per depthwise register tile (one vector of channels each)."""
    return dense_tile_m(out_w, lanes, lanes, registers)


def _pad(X, pads, blocked: bool):
    """Zero-pad the two spatial dims (``pads`` = top, left, bottom, right)."""
    top, left, bottom, right = pads
    if not any(pads):
        return X
    shape = list(X.shape)
    h_ax, w_ax = 2, 3
    h, w = int(shape[h_ax]), int(shape[w_ax])
    shape[h_ax] = h + top + bottom
    shape[w_ax] = w + left + right

    def fn(*idx):
        ih, iw = idx[h_ax] - top, idx[w_ax] - left
        inside = tirx.all(ih >= 0, ih < h, iw >= 0, iw < w)
        src = list(idx)
        src[h_ax], src[w_ax] = ih, iw
        return tirx.if_then_else(inside, X[tuple(src)], tirx.const(0.0, X.dtype))

    return te.compute(shape, fn, name="pad", attrs={C.KERNEL: C.PAD})


def conv2d_nchwc(X, Wp, *, strides, pads, out_hw, lanes: int, tile_m: int, tile_blocks: int,
                 input_blocked: bool, name: str = "conv2d_nchwc"):
    """Grouped-1 convolution in NCHWc (see module docstring); returns the blocked output."""
    n = int(X.shape[0])
    ocb, ic, kh, kw, c = (int(s) for s in Wp.shape)
    sh, sw = strides
    oh, ow = out_hw
    xp = _pad(X, pads, input_blocked)
    pixels = oh * ow
    mr = tile_m
    pixels_p = -(-pixels // mr) * mr
    ric = te.reduce_axis((0, ic), name="rc")
    rkh = te.reduce_axis((0, kh), name="rh")
    rkw = te.reduce_axis((0, kw), name="rw")

    def src(b, p, ci, dh, dw):
        pp = tirx.min(p, pixels - 1) if pixels_p != pixels else p
        ih = (pp // ow) * sh + dh if ow > 1 else pp * sh + dh
        iw = (pp % ow) * sw + dw if ow > 1 else dw
        if input_blocked:
            return xp[b, ci // c, ih, iw, ci % c]
        return xp[b, ci, ih, iw]

    ann = {C.KERNEL: C.CONV2D_NCHWC, C.TILE_M: mr, C.TILE_N: tile_blocks, C.LANES: lanes}
    acc = te.compute(
        (n, ocb, pixels_p, c),
        lambda b, o, p, v: te.sum(src(b, p, ric, rkh, rkw) * Wp[o, ric, rkh, rkw, v], axis=[ric, rkh, rkw]),
        name=f"{name}_acc",
        attrs=ann,
    )
    return te.compute((n, ocb, oh, ow, c), lambda b, o, y, x, v: acc[b, o, y * ow + x, v], name=name)


def depthwise_nchwc(X, Wp, *, strides, pads, out_hw, lanes: int, tile_m: int, name: str = "depthwise_nchwc"):
    """Depthwise convolution (channel multiplier 1) in NCHWc; returns the blocked output."""
    n, cb = int(X.shape[0]), int(X.shape[1])
    _, kh, kw, c = (int(s) for s in Wp.shape)
    sh, sw = strides
    oh, ow = out_hw
    xp = _pad(X, pads, True)
    mr = tile_m
    ow_p = -(-ow // mr) * mr
    rkh = te.reduce_axis((0, kh), name="rh")
    rkw = te.reduce_axis((0, kw), name="rw")

    def fn(b, o, y, x, v):
        xx = tirx.min(x, ow - 1) if ow_p != ow else x
        return te.sum(xp[b, o, y * sh + rkh, xx * sw + rkw, v] * Wp[o, rkh, rkw, v], axis=[rkh, rkw])

    ann = {C.KERNEL: C.DEPTHWISE_NCHWC, C.TILE_M: mr, C.TILE_N: 1, C.LANES: lanes}
    acc = te.compute((n, cb, oh, ow_p, c), fn, name=f"{name}_acc", attrs=ann)
    return te.compute((n, cb, oh, ow, c), lambda b, o, y, x, v: acc[b, o, y, x, v], name=name)
