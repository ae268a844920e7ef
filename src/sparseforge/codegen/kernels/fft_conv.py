"""Depthwise 1-D convolution by FFT: ``Y[b, c, t] = bias[c] + sum_j Xpad[b, c, t + j] * W[c, j]`` (ONNX Conv,
cross-correlation, ``Xpad`` = X with ``pads = (p0, p1)`` zeros), for long kernels.

Float32 in and out, float32 arithmetic throughout; not bit-exact: the FFT reorders the sums, so the error grows
like ``eps * log2(N) * ||x|| * ||w||`` per output (see :func:`sparseforge.ir.forms.fft_conv.tolerance`).

Method (one complex FFT carries two real channels):

* ``N`` = the power of two ``>= T + p0 + p1``; linear correlation of the padded signal with the kernel equals the
  circular one on the outputs kept (``t + L - 1 < N``), so no overlap-add is needed;
* channels ``a = 2i, b = 2i + 1`` are packed as ``z = x_a + i x_b``; with ``Z = FFT(z)`` and the kernel spectra
  ``K_a, K_b`` (of the reversed, zero-padded kernels, precomputed in float64 at build time),
  ``Y_a + i Y_b = Z[k] P[k] + conj(Z[-k]) Q[k]``, ``P = (K_a + K_b) / 2N``, ``Q = (K_a - K_b) / 2N``;
* the inverse is ``conj(FFT(conj(.)))`` (the ``1/N`` is in ``P``, ``Q``): real part channel ``a``, minus the
  imaginary part channel ``b``, outputs ``t + L - 1``.

The FFT is radix-2 Stockham (self-sorting, two ping-pong buffers), vectorized across ``lanes`` channel pairs
(structure-of-arrays ``[N, lanes]``), so every butterfly of every stage is a full-width vector operation; one
parallel task per ``(batch, group of lanes pairs)``. Constants: ``P``/``Q`` (re, im) ``[groups, N, lanes]``, the
twiddles of every stage ``[N]`` (re, im), the bias ``[C]``.
"""

from __future__ import annotations

import numpy as np

from sparseforge.ir.forms.fft_conv import fft_length, reference, tolerance  # noqa: F401 - re-exported

from ._common import Src, SparseKernel, func_header, parallel_or_serial, parse, resolve_target, unique_name
from .fft import emit_fft as _emit_fft
from .fft import twiddles

#: Largest FFT length built (scratch per task is ``4 * N * lanes`` floats).
MAX_FFT = 1 << 20


def spectra(weight: np.ndarray, n: int, lanes: int) -> tuple[np.ndarray, ...]:
    """``(P_re, P_im, Q_re, Q_im)``, each float32 ``[groups, N, lanes]``, of a ``[C, L]`` kernel."""
    c, taps = weight.shape
    pairs = -(-c // 2)
    groups = -(-pairs // lanes)
    padded = np.zeros((groups * lanes * 2, n))
    padded[:c, :taps] = np.asarray(weight, np.float64)[:, ::-1]
    k = np.fft.fft(padded, axis=1)
    p = (k[0::2] + k[1::2]) / (2 * n)
    q = (k[0::2] - k[1::2]) / (2 * n)

    def layout(a):
        return np.ascontiguousarray(a.reshape(groups, lanes, n).transpose(0, 2, 1), dtype=np.float32)

    return layout(p.real), layout(p.imag), layout(q.real), layout(q.imag)


def fft_conv1d(weight: np.ndarray, x_shape: tuple[int, int, int], *, pads=(0, 0), bias=None, target=None,
               name: str | None = None) -> SparseKernel:
    """Depthwise FFT convolution kernel for ``X[B, C, T]`` and ``weight [C, L]`` (``[C, 1, L]`` accepted)."""
    tgt = resolve_target(target)
    batch, channels, length = (int(d) for d in x_shape)
    weight = np.asarray(weight, np.float32).reshape(channels, -1)
    taps = weight.shape[1]
    p0, p1 = (int(p) for p in pads)
    padded = length + p0 + p1
    out_len = padded - taps + 1
    if out_len < 1:
        raise ValueError(f"fft_conv1d: kernel of {taps} taps is longer than the padded signal ({padded})")
    n = fft_length(padded)
    if n > MAX_FFT:
        raise ValueError(f"fft_conv1d: FFT length {n} above {MAX_FFT}")
    lanes = max(4, tgt.lanes)
    groups = -(-channels // (2 * lanes))
    bias = np.zeros(channels, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32).reshape(-1)
    name = name or unique_name("fft_conv1d")
    p_re, p_im, q_re, q_im = spectra(weight, n, lanes)
    tw_re, tw_im = twiddles(n)
    spec = (groups * n * lanes,)
    src = Src()
    func_header(src, name, [("X", (batch, channels, length), "float32"), ("Pr", spec, "float32"),
                            ("Pi", spec, "float32"), ("Qr", spec, "float32"), ("Qi", spec, "float32"),
                            ("TWr", (n,), "float32"), ("TWi", (n,), "float32"), ("BIAS", (channels,), "float32"),
                            ("Y", (batch, channels, out_len), "float32")])
    tasks = batch * groups
    scratch = n * lanes
    with src.block(f"for task in {parallel_or_serial(tgt.threads, tasks)}({tasks}):"):
        for buf in ("Ar", "Ai", "Br", "Bi"):
            src(f'{buf} = T.alloc_buffer(({scratch},), "float32")')
        bufs = [("Ar", "Ai"), ("Br", "Bi")]
        bb = src.let("bb", f"task // {groups}")
        g = src.let("g", f"task % {groups}")
        # load: channel pair v of the group -> lane v (zero outside the signal and past the last channel)
        with src.block(f"for v in T.serial({lanes}):"):
            ca = src.let("ca", f"{g} * {2 * lanes} + 2 * v")
            with src.block(f"for i in T.serial({n}):"):
                t = f"(i - {p0})"
                inside = f"{t} >= 0 and {t} < {length}"
                for buf, off in (("Ar", 0), ("Ai", 1)):
                    ch = f"{ca} + {off}"
                    src(f"{buf}[i * {lanes} + v] = T.if_then_else({inside} and {ch} < {channels}, "
                        f"X[{bb}, T.min({ch}, {channels - 1}), T.max(T.min({t}, {length - 1}), 0)], T.float32(0))")
        cur = _emit_fft(src, n, lanes, bufs, 0)
        (zr, zi), (wr_, wi_) = bufs[cur], bufs[1 - cur]
        # W = Z P + conj(Z[-k]) Q, stored conjugated (the inverse is conj(FFT(conj W)))
        with src.block(f"for k in T.serial({n}):"):
            with src.block(f"for v in T.vectorized({lanes}):"):
                at = f"k * {lanes} + v"
                mirror = f"((({n} - k) % {n}) * {lanes} + v)"
                sp = f"({g} * {n} + k) * {lanes} + v"
                a_r, a_i = src.let("a_r", f"{zr}[{at}]"), src.let("a_i", f"{zi}[{at}]")
                m_r, m_i = src.let("m_r", f"{zr}[{mirror}]"), src.let("m_i", f"-{zi}[{mirror}]")
                p_r, p_i = src.let("p_r", f"Pr[{sp}]"), src.let("p_i", f"Pi[{sp}]")
                q_r, q_i = src.let("q_r", f"Qr[{sp}]"), src.let("q_i", f"Qi[{sp}]")
                src(f"{wr_}[{at}] = {a_r} * {p_r} - {a_i} * {p_i} + {m_r} * {q_r} - {m_i} * {q_i}")
                src(f"{wi_}[{at}] = -({a_r} * {p_i} + {a_i} * {p_r} + {m_r} * {q_i} + {m_i} * {q_r})")
        cur = _emit_fft(src, n, lanes, bufs, 1 - cur)
        yr, yi = bufs[cur]
        with src.block(f"for v in T.serial({lanes}):"):
            ca = src.let("co", f"{g} * {2 * lanes} + 2 * v")
            for buf, off, sign in ((yr, 0, ""), (yi, 1, "-")):
                ch = f"{ca} + {off}"
                with src.block(f"if {ch} < {channels}:"):
                    with src.block(f"for t in T.serial({out_len}):"):
                        src(f"Y[{bb}, {ch}, t] = {sign}{buf}[(t + {taps - 1}) * {lanes} + v] + BIAS[{ch}]")
    func = parse(src)
    consts = (p_re.reshape(-1), p_im.reshape(-1), q_re.reshape(-1), q_im.reshape(-1), tw_re, tw_im, bias)
    info = dict(format="fft", variant=f"stockham-r2-{lanes}", fft_length=n, taps=taps)
    return SparseKernel(name, func, consts, (batch, channels, out_len), "float32", (batch, channels, length), info,
                        lambda x: reference(x, weight, bias, (p0, p1)))
