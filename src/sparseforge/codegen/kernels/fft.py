"""Batched complex FFT ``Y[b] = DFT(X[b])`` over ``n`` points (a power of two), for the ``DFT``/``STFT`` converters.

``X, Y [B, n, 2]`` float32 (real, imaginary last, the ONNX layout); ``inverse`` conjugates the twiddles and
divides by ``n``. Radix-2 Stockham (self-sorting, two ping-pong buffers), vectorized across ``lanes`` signals
(structure-of-arrays ``[n, lanes]``) so every butterfly is a full-width vector operation; one parallel task per
group of ``lanes`` signals. Float32 arithmetic, error ~``eps log2(n)`` of the signal's norm.
:func:`emit_fft` is shared with :mod:`.fft_conv`.
"""

from __future__ import annotations

import numpy as np

from ._common import Src, SparseKernel, func_header, parallel_or_serial, parse, resolve_target, unique_name


def twiddles(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Twiddles of the Stockham stages of length ``N, N/2, ..., 2``: ``exp(-2 pi i p / len)`` for
    ``p < len / 2``, concatenated (the stage of length ``len`` starts at ``N - len``); padded to ``N``."""
    parts = [np.exp(-2j * np.pi * np.arange(size // 2) / size) for size in (n >> s for s in range(int(np.log2(n))))]
    tw = np.concatenate([*parts, [1.0]])
    return tw.real.astype(np.float32), tw.imag.astype(np.float32)


def emit_fft(src: Src, n: int, lanes: int, bufs: list[tuple[str, str]], start: int) -> int:
    """Stockham stages from ``bufs[start]`` ping-ponging with the other buffer; returns the index of the buffer
    that holds the result."""
    length, stride, cur = n, 1, start
    while length > 1:
        half = length // 2
        (sr, si), (dr, di) = bufs[cur], bufs[1 - cur]
        offset = n - length
        with src.block(f"for p in T.serial({half}):"):
            wr = src.let("wr", f"TWr[{offset} + p]")
            wi = src.let("wi", f"TWi[{offset} + p]")
            with src.block(f"for q in T.serial({stride}):"):
                with src.block(f"for v in T.vectorized({lanes}):"):
                    a = f"(q + {stride} * p) * {lanes} + v"
                    b = f"(q + {stride} * (p + {half})) * {lanes} + v"
                    ar = src.let("ar", f"{sr}[{a}]")
                    ai = src.let("ai", f"{si}[{a}]")
                    br = src.let("br", f"{sr}[{b}]")
                    bi = src.let("bi", f"{si}[{b}]")
                    even = f"(q + {stride} * 2 * p) * {lanes} + v"
                    odd = f"(q + {stride} * (2 * p + 1)) * {lanes} + v"
                    src(f"{dr}[{even}] = {ar} + {br}")
                    src(f"{di}[{even}] = {ai} + {bi}")
                    src(f"{dr}[{odd}] = ({ar} - {br}) * {wr} - ({ai} - {bi}) * {wi}")
                    src(f"{di}[{odd}] = ({ar} - {br}) * {wi} + ({ai} - {bi}) * {wr}")
        length, stride, cur = half, stride * 2, 1 - cur
    return cur



def fft_batched(batch: int, n: int, *, inverse: bool = False, target=None, name: str | None = None) -> SparseKernel:
    """The kernel for ``X [batch, n, 2]`` (``n`` a power of two, at least 2)."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"fft_batched: n must be a power of two, got {n}")
    tgt = resolve_target(target)
    lanes = max(4, tgt.lanes)
    groups = -(-batch // lanes)
    name = name or unique_name("fft")
    tw_re, tw_im = twiddles(n)
    if inverse:
        tw_im = -tw_im
    scale = 1.0 / n if inverse else 1.0
    src = Src()
    func_header(src, name, [("X", (batch, n, 2), "float32"), ("TWr", (n,), "float32"), ("TWi", (n,), "float32"),
                            ("Y", (batch, n, 2), "float32")])
    with src.block(f"for g in {parallel_or_serial(tgt.threads, groups)}({groups}):"):
        for buf in ("Ar", "Ai", "Br", "Bi"):
            src(f'{buf} = T.alloc_buffer(({n * lanes},), "float32")')
        bufs = [("Ar", "Ai"), ("Br", "Bi")]
        with src.block(f"for v in T.serial({lanes}):"):
            row = src.let("row", f"g * {lanes} + v")
            with src.block(f"for i in T.serial({n}):"):
                for buf, part in (("Ar", 0), ("Ai", 1)):
                    src(f"{buf}[i * {lanes} + v] = T.if_then_else({row} < {batch}, "
                        f"X[T.min({row}, {batch - 1}), i, {part}], T.float32(0))")
        cur = emit_fft(src, n, lanes, bufs, 0)
        yr, yi = bufs[cur]
        with src.block(f"for v in T.serial({lanes}):"):
            row = src.let("orow", f"g * {lanes} + v")
            with src.block(f"if {row} < {batch}:"):
                with src.block(f"for i in T.serial({n}):"):
                    src(f"Y[{row}, i, 0] = {yr}[i * {lanes} + v] * T.float32({scale!r})")
                    src(f"Y[{row}, i, 1] = {yi}[i * {lanes} + v] * T.float32({scale!r})")
    func = parse(src)

    def reference(x):
        z = x[..., 0].astype(np.float64) + 1j * x[..., 1]
        out = np.fft.ifft(z, axis=1) if inverse else np.fft.fft(z, axis=1)
        return np.stack([out.real, out.imag], axis=-1).astype(np.float32)

    info = dict(format="fft", variant=f"stockham-r2-{lanes}", fft_length=n, inverse=inverse)
    return SparseKernel(name, func, (tw_re, tw_im), (batch, n, 2), "float32", (batch, n, 2), info, reference)
