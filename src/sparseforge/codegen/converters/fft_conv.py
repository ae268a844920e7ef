"""``FftConv`` as Relax: one real FFT per input signal, the complex products (summed over each group's input
channels as batched products per frequency; elementwise when depthwise), one inverse real FFT per output signal
(:func:`.dft.transform`: sparseforge's FFT kernel on CPU targets, the four-step decomposition into dense products
where there is none, e.g. CUDA). On CPU targets depthwise ones use a kernel of their own instead
(:mod:`sparseforge.codegen.kernels.fft_conv`).

Layouts: ``X [B, C, T]``, ``W [O, C/g, L]``, ``bias [O]``; the kernel spectra (of the reversed taps, float64 at
build time, stored as float32) ``[g, F, C/g, O/g]`` for ``F = N/2 + 1`` bins. Error: the FFT's, bounded by
:func:`sparseforge.ir.forms.fft_conv.tolerance`.
"""

from __future__ import annotations

import numpy as np

from sparseforge.ir.forms import fft_conv

from . import dft
from ._util import op, relax, shape


def kernel_spectra(weight: np.ndarray, groups: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(re, im)`` float32 ``[g, F, C/g, O/g]``: the one-sided spectra of the reversed, zero-padded taps."""
    out, per_group, taps = weight.shape
    padded = np.zeros((out, per_group, n))
    padded[..., :taps] = np.asarray(weight, np.float64)[..., ::-1]
    spectrum = np.fft.rfft(padded, axis=-1)  # [O, C/g, F]
    spectrum = spectrum.reshape(groups, out // groups, per_group, -1).transpose(0, 3, 2, 1)
    return (np.ascontiguousarray(spectrum.real, dtype=np.float32),
            np.ascontiguousarray(spectrum.imag, dtype=np.float32))


def grouped(bb, x, weight: np.ndarray, bias: np.ndarray, pads: tuple[int, int], target):
    """``Y [B, O, T_out]`` of the grouped long convolution of ``x [B, C, T]`` (a Relax expression)."""
    batch, channels, length = shape(x)
    out, per_group, taps = weight.shape
    groups = channels // per_group
    p0, p1 = pads
    n = fft_conv.fft_length(length + p0 + p1)
    bins = n // 2 + 1
    signal = bb.emit(op.reshape(op.nn.pad(x, [0, 0, 0, 0, p0, n - length - p0]), (batch * channels, n)))
    re, im = dft.transform(bb, signal, None, n, inverse=False, onesided=True, target=target)  # [B*C, F]

    def by_frequency(part):  # [B*C, F] -> [g, F, B, C/g]
        return bb.emit(op.permute_dims(op.reshape(part, (batch, groups, per_group, bins)), [1, 3, 0, 2]))

    xr, xi = by_frequency(re), by_frequency(im)
    kr, ki = (relax.const(a) for a in kernel_spectra(weight, groups, n))
    # depthwise ([g, F, B, 1] x [g, F, 1, 1]): a broadcast product; otherwise batched products per frequency
    mm = op.multiply if per_group == 1 and out == groups else op.matmul

    yr = bb.emit(op.subtract(mm(xr, kr), mm(xi, ki)))  # [g, F, B, O/g]
    yi = bb.emit(op.add(mm(xr, ki), mm(xi, kr)))

    def by_signal(part):  # [g, F, B, O/g] -> [B*O, F]
        return bb.emit(op.reshape(op.permute_dims(part, [2, 0, 3, 1]), (batch * out, bins)))

    y, _ = dft.transform(bb, by_signal(yr), by_signal(yi), n, inverse=True, onesided=True, target=target)
    y = bb.emit(op.reshape(y, (batch, out, n)))
    out_len = length + p0 + p1 - taps + 1
    kept = bb.emit(op.strided_slice(y, axes=[2], begin=[taps - 1], end=[taps - 1 + out_len]))
    return bb.emit(op.add(kept, relax.const(np.asarray(bias, np.float32).reshape(-1, 1))))
