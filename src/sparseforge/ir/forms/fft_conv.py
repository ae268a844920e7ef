"""FFT long convolution: the op ``ai.sparseforge.FftConv``, a depthwise 1-D ONNX ``Conv`` computed through the
discrete Fourier transform.

``FftConv(X [B, C, T], W [C, 1, L], bias [C], plan int64 [6]) -> Y [B, C, T_out]`` computes exactly what
``Conv(X, W, bias, group=C, pads=[p0, p1])`` computes (cross-correlation of the zero-padded signal), up to the
FFT's rounding. ``plan = [p0, right, N, N - L, L - 1, L - 1 + T_out]``: ``N`` the power of two at least
``T + p0 + p1`` (:func:`fft_length`), ``right = N - T - p0`` the zeros that pad the signal to ``N``. Linear
correlation equals the circular one of length ``N`` on the kept outputs (index ``t + L - 1 < N``), so one
transform of each signal suffices.

Tolerance: not exact in the summation-order sense; the error of each output is bounded by about
``eps * log2(N) * ||x_c|| * ||w_c||`` (:func:`tolerance` states the bound the tests and ``--verify`` use).

The ONNX function body uses the standard ``DFT`` op (opset 17+; ``axis`` an input from opset 20): pad, forward
DFT of the signal and of the reversed kernel, complex product, inverse DFT, real part, slice, bias. ONNX Runtime
runs it; sparseforge's codegen lowers the op to its own FFT kernel
(:mod:`sparseforge.codegen.kernels.fft_conv`).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.forms.onnx_body import Builder
from sparseforge.ir.keys import DOMAIN

OP_TYPE = "FftConv"
#: The DFT op exists from this opset on.
MIN_OPSET = 17
#: Kernels shorter than this are left to the direct convolution.
MIN_TAPS = 64


def fft_length(padded: int) -> int:
    """The power of two at least ``padded`` (the padded signal length)."""
    return 1 << max(1, int(padded - 1).bit_length())


def plan(length: int, taps: int, pads: tuple[int, int]) -> np.ndarray:
    """The ``plan`` input for a signal of ``length`` samples, ``taps`` kernel taps and ``pads = (p0, p1)``."""
    p0, p1 = (int(p) for p in pads)
    padded = length + p0 + p1
    n = fft_length(padded)
    out_len = padded - taps + 1
    return np.array([p0, n - length - p0, n, n - taps, taps - 1, taps - 1 + out_len], np.int64)


def worth_it(length: int, taps: int, pads: tuple[int, int]) -> tuple[bool, str]:
    """Whether the FFT does fewer operations than the direct convolution: ``T_out * L`` multiply-adds per channel
    against about ``8 N log2 N`` for two complex transforms shared by two channels and the product; a reason."""
    p0, p1 = pads
    padded = length + p0 + p1
    out_len = padded - taps + 1
    n = fft_length(padded)
    direct = out_len * taps
    fft = 8 * n * int(np.log2(n))
    if direct <= fft:
        return False, (f"{taps} taps over {out_len} outputs: the direct convolution ({direct} multiply-adds per "
                       f"channel) is not dearer than the FFT of length {n} (~{fft})")
    return True, f"{taps} taps over {out_len} outputs: FFT of length {n}, ~{direct / fft:.0f}x fewer operations"


def tolerance(x: np.ndarray, w: np.ndarray, n: int) -> float:
    """Absolute error bound used to check results: ``8 * eps * log2(N) * max_c ||x_c|| ||w_c||`` (the FFT's error
    per output scales with the norms of the signal and the kernel, not with the output)."""
    x = np.asarray(x, np.float64)
    xn = np.sqrt((x.reshape(-1, x.shape[-1]) ** 2).sum(axis=-1)).max()
    wn = np.sqrt((np.asarray(w, np.float64).reshape(w.shape[0], -1) ** 2).sum(axis=-1)).max()
    return float(8 * np.finfo(np.float32).eps * np.log2(n) * xn * wn)


def reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, pads: tuple[int, int]) -> np.ndarray:
    """Float64 direct depthwise correlation (NumPy), as float32: what ``FftConv`` approximates."""
    b, c, t = x.shape
    taps = weight.shape[-1]
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), tuple(int(p) for p in pads)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps, axis=2)  # [B, C, Tout, L]
    y = np.einsum("bctl,cl->bct", windows, np.asarray(weight, np.float64).reshape(c, taps))
    if bias is not None:
        y = y + np.asarray(bias, np.float64)[None, :, None]
    return y.astype(np.float32)


def op_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, plan_: np.ndarray) -> np.ndarray:
    """NumPy reference of the op from its inputs."""
    return reference(x, weight, bias, pads_of(plan_, x.shape[-1], weight.shape[-1]))


def pads_of(plan_: np.ndarray, length: int, taps: int) -> tuple[int, int]:
    """``(p0, p1)`` of a plan for a signal of ``length`` samples and ``taps`` taps (``T_out = T + p0 + p1 - L +
    1``)."""
    p0, _, _, _, start, stop = (int(v) for v in plan_)
    return p0, (stop - start) - length - p0 + taps - 1


def function(opset: int) -> ir.Function:
    """The model-local ONNX function of ``FftConv`` importing default opset ``opset`` (>= :data:`MIN_OPSET`)."""
    if opset < MIN_OPSET:
        raise ValueError(f"FftConv's function body needs the DFT op (opset {MIN_OPSET}+), the model imports {opset}")
    x, w, bias, plan_ = (ir.Value(name=n) for n in ("X", "W", "bias", "plan"))
    b = Builder()

    def part(v, i):  # plan[i] as a 1-element int64 tensor
        return b.op("Slice", v, b.i64(i), b.i64(i + 1))

    def dft(v, n, inverse=0):
        if opset >= 20:
            return b.op("DFT", v, n, b.const(np.array(2, np.int64)), inverse=inverse, onesided=0)
        return b.op("DFT", v, n, axis=2, inverse=inverse, onesided=0)

    zero2 = b.i64(0, 0)
    n = b.op("Squeeze", part(plan_, 2), b.i64(0))  # DFT wants a scalar length
    signal_pads = b.op("Concat", zero2, part(plan_, 0), zero2, part(plan_, 1), axis=0)
    signal = b.op("Unsqueeze", b.op("Pad", x, signal_pads), b.i64(-1))  # [B, C, N, 1]
    flipped = b.op("Slice", w, b.i64(-1), b.i64(-(1 << 62)), b.i64(2), b.i64(-1))  # reversed taps
    kernel_pads = b.op("Concat", b.i64(0, 0, 0, 0, 0), part(plan_, 3), axis=0)
    kernel = b.op("Unsqueeze", b.op("Pad", flipped, kernel_pads), b.i64(-1))  # [C, 1, N, 1]
    xf = dft(signal, n)  # [B, C, N, 2]
    kf = b.op("Squeeze", dft(kernel, n), b.i64(1))  # [C, N, 2]
    re, im, last = b.i64(0), b.i64(1), b.i64(-1)
    xr, xi = b.op("Slice", xf, re, im, last), b.op("Slice", xf, im, b.i64(2), last)
    kr, ki = b.op("Slice", kf, re, im, last), b.op("Slice", kf, im, b.i64(2), last)
    pr = b.op("Sub", b.op("Mul", xr, kr), b.op("Mul", xi, ki))
    pi = b.op("Add", b.op("Mul", xr, ki), b.op("Mul", xi, kr))
    product = b.op("Concat", pr, pi, axis=-1)
    y = b.op("Squeeze", b.op("Slice", dft(product, n, inverse=1), re, im, last), last)  # [B, C, N]
    kept = b.op("Slice", y, part(plan_, 4), part(plan_, 5), b.i64(2))
    out = b.op("Add", kept, b.op("Unsqueeze", bias, b.i64(1)))
    out.name = "Y"
    graph = ir.Graph([x, w, bias, plan_], [out], nodes=b.nodes, opset_imports={"": opset}, name=OP_TYPE)
    return ir.Function(DOMAIN, OP_TYPE, graph=graph, attributes=[])
