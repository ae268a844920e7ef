"""Winograd F(2x2, 3x3) convolution in NCHWc: the transforms (TE) and the weight packing (NumPy).

A 3x3 stride-1 convolution with "same" padding computes each 2x2 output tile from a 4x4 input tile with 16
products per channel pair where the direct form needs 36 (Lavin & Gray, 2016):

* ``V[4a + b, t, i] = (B^T d_t,i B)[a, b]``: the input tiles, transformed (:func:`winograd_input`);
* ``M[e, t, o] = sum_i V[e, t, i] U[e, o, i]``: 16 independent GEMMs of tiles x input channels
  (the packed dense kernel, :func:`~.kernels_dense.dense_packed`, batched over ``e = 4a + b``);
* ``Y[o, 2ty + r, 2tx + s] = (A^T M_t,o A)[r, s]``: the output transform (:func:`winograd_output`), whose
  block the fused epilogue (bias, activation, residual add) attaches to.

``U = G g G^T`` is computed once from the constant weight (:func:`winograd_weight`). Layouts (float32, ``c`` the
SIMD lanes): input blocked ``[1, IC/c, H, W, c]`` (IC a multiple of ``c``), ``V [16, T, IC]`` with ``T =
ceil(H/2) * ceil(W/2)`` tiles row-major, ``M [16, T, OC]``, output blocked ``[1, ceil(OC/c), H, W, c]``.

Exactness: the transforms only add, subtract and halve (G's 0.5 is exact in binary), so the result differs from
the direct sum by rounding in a different order: about 1e-6 relative in float32 on ResNet layers (tested against a
float64 reference), as any reordered reduction.
"""

from __future__ import annotations

import numpy as np

from .. import _tvm
from . import _contract as C

te = _tvm.te
tirx = _tvm.tirx

#: G of F(2x2, 3x3): ``U = G g G^T`` (4x4 per channel pair).
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
#: B^T and A^T, as used by the TE transforms below (written out there as sums, so no multiply by 0 or 1).
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

#: Fewest output tiles: below it the 16 GEMMs have too few rows and the transformed weight (16/9 of the direct
#: one) is streamed for little work (512x7x7, 16 tiles: 1.25x; 1024x4x4, 4 tiles, would be 1.36x, not taken).
MIN_TILES = 16


#: Least ``IC * OC / (IC + OC)`` (GEMM work per transformed element) for which Winograd wins: the transforms cost
#: ``IC + OC`` per tile element, the GEMMs ``IC * OC``. Measured per layer (1 thread, direct / Winograd): 8->8
#: (4) 0.48x, 16->16 (8) 0.69x, 32->32 at 112x112 (16) 0.77x; 40->40 (20) 1.78x, 64->32 (21) 1.04x, 48->48 (24)
#: 1.78x, 32->128 (26) 1.04x, 64->64 at 112x112 (32) 1.17x, ResNet-18's layers (32-256) 1.25-1.8x.
MIN_CHANNEL_WORK = 20


def eligible(x_shape, w_shape, strides, pads, groups: int, lanes: int) -> bool:
    """Whether this convolution runs as Winograd F(2x2, 3x3): 3x3, stride 1, "same" padding, groups 1, a
    blocked input with whole channel blocks, enough tiles and enough channels to pay for the transforms."""
    n, ic, h, w = x_shape
    oc = w_shape[0]
    tiles = -(-h // 2) * -(-w // 2)
    return (n == 1 and groups == 1 and tuple(w_shape[2:]) == (3, 3) and list(strides) == [1, 1]
            and list(pads) == [1, 1, 1, 1] and ic % lanes == 0 and tiles >= MIN_TILES
            and ic * oc >= MIN_CHANNEL_WORK * (ic + oc))


def winograd_weight(w: np.ndarray, nr: int) -> np.ndarray:
    """``U = G g G^T`` of an OIHW 3x3 weight, packed for the batched dense kernel: ``[16, ceil(OC/nr), IC, nr]``
    (``[e, o // nr, i, o % nr]``, zero past OC), float32."""
    oc, ic = w.shape[:2]
    u = np.einsum("ah,oihw,bw->abio", G, w.astype(np.float64), G).reshape(16, ic, oc)
    nb = -(-oc // nr)
    packed = np.zeros((16, ic, nb * nr))
    packed[:, :, :oc] = u
    return np.ascontiguousarray(packed.reshape(16, ic, nb, nr).transpose(0, 2, 1, 3)).astype(np.float32)


def _rows(index, f):
    """``sum_i BT[index, i] f(i)`` with ``index`` a (loop) variable, as a select over B^T's four rows."""
    return tirx.if_then_else(index == 0, f(0) - f(2), tirx.if_then_else(
        index == 1, f(1) + f(2), tirx.if_then_else(index == 2, f(2) - f(1), f(1) - f(3))))


def winograd_input(X, *, lanes: int, name: str = "winograd_input"):
    """``V[4a + b, t, i]`` of the blocked input ``X [1, IC/c, H, W, c]`` (zero padding of 1 read as zeros)."""
    _, icb, h, w, c = (int(s) for s in X.shape)
    ic = icb * c
    th, tw = -(-h // 2), -(-w // 2)

    def fn(e, t, i):
        y0, x0 = (t // tw) * 2 - 1, (t % tw) * 2 - 1

        def d(r, s):
            y, x = y0 + r, x0 + s
            inside = tirx.all(y >= 0, y < h, x >= 0, x < w)
            return tirx.if_then_else(inside, X[0, i // c, tirx.max(tirx.min(y, h - 1), 0),
                                               tirx.max(tirx.min(x, w - 1), 0), i % c], tirx.const(0.0, X.dtype))

        return _rows(e // 4, lambda r: _rows(e % 4, lambda s: d(r, s)))

    return te.compute((16, th * tw, ic), fn, name=name, attrs={C.KERNEL: C.WINOGRAD_INPUT, C.LANES: lanes})


def winograd_output(M, *, oc: int, out_hw, lanes: int, name: str = "winograd_output"):
    """The blocked output ``[1, ceil(OC/c), H, W, c]`` of ``M [16, T, OC]`` (lanes past OC repeat channel OC-1)."""
    h, w = out_hw
    tw = -(-w // 2)
    ocb = -(-oc // lanes)

    def fn(n, o, y, x, v):
        t = (y // 2) * tw + x // 2
        ch = tirx.min(o * lanes + v, oc - 1) if ocb * lanes != oc else o * lanes + v

        def m(a, b):
            return M[a * 4 + b, t, ch]

        def cols(a):
            return tirx.if_then_else(x % 2 == 0, m(a, 0) + m(a, 1) + m(a, 2), m(a, 1) - m(a, 2) - m(a, 3))

        return tirx.if_then_else(y % 2 == 0, cols(0) + cols(1) + cols(2), cols(1) - cols(2) - cols(3))

    return te.compute((1, ocb, h, w, lanes), fn, name=name, attrs={C.KERNEL: C.WINOGRAD_OUTPUT, C.LANES: lanes})
