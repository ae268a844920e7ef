"""FFT long convolution: the op ``ai.sparseforge.FftConv``, a 1-D ONNX ``Conv`` (depthwise, grouped or dense)
computed through the discrete Fourier transform.

``FftConv(X [B, C, T], W [O, C/g, L], bias [O], plan int64 [6]) -> Y [B, O, T_out]`` computes exactly what
``Conv(X, W, bias, group=g, pads=[p0, p1])`` computes (cross-correlation of the zero-padded signal), up to the
FFT's rounding; ``g = C / W.shape[1]`` (depthwise: ``W [C, 1, L]``, ``g = C``). ``plan = [p0, right, N, N - L,
L - 1, L - 1 + T_out]``: ``N`` the power of two at least ``T + p0 + p1`` (:func:`fft_length`), ``right = N - T -
p0`` the zeros that pad the signal to ``N``. Linear correlation equals the circular one of length ``N`` on the kept
outputs (index ``t + L - 1 < N``), so one transform of each signal suffices; output channel ``o`` of group ``j``
sums the products of its ``C/g`` input spectra with its kernel spectra, per frequency.

Tolerance: not exact in the summation-order sense; the error of each output is bounded by about
``eps * log2(N) * sum_i ||x_i|| ||w_oi||`` (:func:`tolerance` states the bound the tests and ``--verify`` use).

The ONNX function body uses the standard ``DFT`` op (opset 17+; ``axis`` an input from opset 20): pad, forward
DFT of the signal and of the reversed kernel, complex products summed over each group's input channels
(``Einsum``), inverse DFT, real part, slice, bias. ONNX Runtime runs it; sparseforge's codegen lowers the op to its
own FFT kernels (:mod:`sparseforge.codegen.kernels.fft_conv` for depthwise ones).
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


def worth_it(length: int, taps: int, pads: tuple[int, int], *, in_channels: int = 1, out_channels: int = 1,
             groups: int = 1) -> tuple[bool, str]:
    """Whether the FFT does fewer operations than the direct convolution, and a reason. Direct: ``T_out * L *
    C/g`` multiply-adds per output channel. FFT: about ``4 N log2 N`` per transform (``C`` forward, ``O`` inverse;
    two real signals share one complex transform) plus ``2 N C/g`` for the products over the half spectrum, when
    there is more than one input channel per group (depthwise: ``8 N log2 N`` per channel)."""
    p0, p1 = pads
    padded = length + p0 + p1
    out_len = padded - taps + 1
    n = fft_length(padded)
    per_group = in_channels // max(1, groups)
    direct = out_len * taps * per_group
    fft = 4 * n * int(np.log2(n)) * (in_channels + out_channels) / out_channels
    if per_group > 1:
        fft += 2 * n * per_group
    fft = int(fft)
    if direct <= fft:
        return False, (f"{taps} taps over {out_len} outputs: the direct convolution ({direct} multiply-adds per "
                       f"output channel) is not dearer than the FFT of length {n} (~{fft})")
    return True, f"{taps} taps over {out_len} outputs: FFT of length {n}, ~{direct / fft:.0f}x fewer operations"


def tolerance(x: np.ndarray, w: np.ndarray, n: int) -> float:
    """Absolute error bound used to check results: ``8 * eps * log2(N) * max_c ||x_c|| * max_o sum_i ||w_oi||``
    (the FFT's error per output scales with the norms of the signals and kernels it sums, not with the output);
    ``w`` is ``[O, C/g, L]`` (or ``[C, L]`` for depthwise)."""
    x = np.asarray(x, np.float64)
    xn = np.sqrt((x.reshape(-1, x.shape[-1]) ** 2).sum(axis=-1)).max()
    w = np.asarray(w, np.float64)
    w = w.reshape(w.shape[0], -1, w.shape[-1])
    wn = np.sqrt((w ** 2).sum(axis=-1)).sum(axis=1).max()
    return float(8 * np.finfo(np.float32).eps * np.log2(n) * xn * wn)


def reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, pads: tuple[int, int]) -> np.ndarray:
    """Float64 direct (grouped) correlation (NumPy), as float32: what ``FftConv`` approximates. ``weight`` is
    ``[O, C/g, L]``, or ``[C, L]`` for depthwise."""
    b, c, t = x.shape
    w = np.asarray(weight, np.float64)
    w = w.reshape(c, 1, -1) if w.ndim == 2 else w
    out, per_group, taps = w.shape
    groups = c // per_group
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), tuple(int(p) for p in pads)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps, axis=2)  # [B, C, Tout, L]
    windows = windows.reshape(b, groups, per_group, -1, taps)
    y = np.einsum("bgitl,goil->bgot", windows, w.reshape(groups, out // groups, per_group, taps))
    y = y.reshape(b, out, -1)
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
    kernel = b.op("Unsqueeze", b.op("Pad", flipped, kernel_pads), b.i64(-1))  # [O, C/g, N, 1]
    xf = dft(signal, n)  # [B, C, N, 2]
    kf = dft(kernel, n)  # [O, C/g, N, 2]
    # groups: X [B, g, C/g, N, 2], K [g, O/g, C/g, N, 2]; g = C / (C/g) from the shapes
    per_group = b.op("Slice", b.op("Shape", w), b.i64(1), b.i64(2))
    groups = b.op("Div", b.op("Slice", b.op("Shape", x), b.i64(1), b.i64(2)), per_group)
    length, two = part(plan_, 2), b.i64(2)
    xg = b.op("Reshape", xf, b.op("Concat", b.i64(0), groups, per_group, length, two, axis=0))
    kg = b.op("Reshape", kf, b.op("Concat", groups, b.i64(-1), per_group, length, two, axis=0))
    re, im, last = b.i64(0), b.i64(1), b.i64(-1)

    def real_imag(v):
        return (b.op("Squeeze", b.op("Slice", v, re, im, last), last),
                b.op("Squeeze", b.op("Slice", v, im, two, last), last))

    (xr, xi), (kr, ki) = real_imag(xg), real_imag(kg)

    def mix(a, k):  # sum over the group's input channels, per frequency
        return b.op("Einsum", a, k, equation="bgin,goin->bgon")

    pr = b.op("Sub", mix(xr, kr), mix(xi, ki))
    pi = b.op("Add", mix(xr, ki), mix(xi, kr))
    product = b.op("Concat", b.op("Unsqueeze", pr, last), b.op("Unsqueeze", pi, last), axis=-1)  # [B, g, O/g, N, 2]
    product = b.op("Reshape", product, b.op("Concat", b.i64(0, -1), length, two, axis=0))  # [B, O, N, 2]
    y = b.op("Squeeze", b.op("Slice", dft(product, n, inverse=1), re, im, last), last)  # [B, O, N]
    kept = b.op("Slice", y, part(plan_, 4), part(plan_, 5), b.i64(2))
    out = b.op("Add", kept, b.op("Unsqueeze", bias, b.i64(1)))
    out.name = "Y"
    graph = ir.Graph([x, w, bias, plan_], [out], nodes=b.nodes, opset_imports={"": opset}, name=OP_TYPE)
    return ir.Function(DOMAIN, OP_TYPE, graph=graph, attributes=[])
