"""``DFT`` (opset 17 and 20) and ``STFT`` (opset 17), which TVM's importer lacks, as products with constant
transform matrices.

Semantics follow ``onnx.reference`` (``op_dft``, ``op_stft``): the last axis holds ``[re]`` or ``[re, im]``; the
transform runs along ``axis`` (an attribute, default 1, in opset 17; a constant input, default -2, from 20) over
``dft_length`` points (the input truncated or zero-padded; default the axis length, or ``2 (K - 1)`` for a
one-sided inverse); ``onesided`` keeps bins ``0..n/2`` of a forward transform and makes an inverse one real
(``irfft``); the inverse divides by ``n``.

On CPU targets a power-of-two transform of at least :data:`MIN_FFT` points runs as sparseforge's batched FFT
kernel (:func:`sparseforge.codegen.kernels.fft.fft_batched`, ``O(n log n)``); a one-sided inverse first rebuilds the
Hermitian spectrum (imaginary parts of the DC and Nyquist bins dropped, as ``irfft`` does). Elsewhere (CUDA, and
lengths the kernel does not take) a transform of at least :data:`MIN_FOUR_STEP` points with a factorization
``n = N1 N2`` runs as the four-step decomposition (:func:`_four_step`: two products with constant DFT matrices of
sizes ``N1`` and ``N2`` around twiddles, ``O(n (N1 + N2))``, dense products a GPU runs well); shorter ones are
products with constant matrices ``C = cos(2 pi t k / n)``, ``S = sin(2 pi t k / n)`` (float64, stored as float32):
``O(n^2)`` work per signal, up to :data:`MAX_LENGTH` points.
"""

from __future__ import annotations

import numpy as np

from sparseforge.errors import UnsupportedOpError

from ..kernels.fft import fft_batched
from ._util import constant_value, dtype, op, padded, relax, shape

#: Longest transform built as a matrix (two float32 ``n x n`` matrices: 128 MiB at 4096).
MAX_LENGTH = 4096
#: Shortest power-of-two transform run by the FFT kernel (shorter ones are cheap as matrices).
MIN_FFT = 16
#: Shortest transform run by the four-step decomposition where there is no FFT kernel (CUDA).
MIN_FOUR_STEP = 256


def _int_input(expr, what: str, node: str) -> int | None:
    if expr is None:
        return None
    value = constant_value(expr)
    if value is None:
        raise UnsupportedOpError(f"{node}: the {what} input is computed at run time; it must be a constant")
    return int(np.asarray(value).reshape(-1)[0])


def _resize(bb, x, length: int, n: int):
    """``x [B, length]`` truncated or zero-padded to ``[B, n]``."""
    if length > n:
        return bb.emit(op.strided_slice(x, axes=[1], begin=[0], end=[n]))
    if length < n:
        return bb.emit(op.nn.pad(x, [0, 0, 0, n - length]))
    return x


def _matrices(n: int, bins: int, sign: float, scale: float, weights=None):
    t = np.arange(n)[:, None]
    k = np.arange(bins)[None, :]
    angle = 2.0 * np.pi * (t * k % n) / n
    cos, sin = np.cos(angle) * scale, sign * np.sin(angle) * scale
    if weights is not None:  # rows are bins for the one-sided inverse
        cos, sin = cos * weights[None, :], sin * weights[None, :]
    return cos, sin


def _fft(bb, re, im, n: int, inverse: bool, target):
    """``(re, im)`` ``[B, n]`` through the FFT kernel: ``[B, n, 2]``."""
    batch = shape(re)[0]
    if im is None:
        im = bb.emit(op.zeros((batch, n), "float32"))
    x = bb.emit(op.stack([re, im], axis=2))
    kernel = fft_batched(batch, n, inverse=inverse, target=target)
    gv = bb.add_func(kernel.func, kernel.name)
    return bb.emit(relax.call_tir(gv, [x, *(relax.const(c) for c in kernel.constants)],
                                  relax.TensorType(kernel.out_shape, "float32")))


def _parts(bb, z, bins: int | None = None):
    end = shape(z)[1] if bins is None else bins
    re = bb.emit(op.squeeze(op.strided_slice(z, axes=[1, 2], begin=[0, 0], end=[end, 1]), [2]))
    im = bb.emit(op.squeeze(op.strided_slice(z, axes=[1, 2], begin=[0, 1], end=[end, 2]), [2]))
    return re, im


def four_step_factors(n: int) -> tuple[int, int] | None:
    """``(N1, N2)`` with ``N1 N2 = n``, ``N1 <= N2 <= MAX_LENGTH`` and ``N1`` the largest such divisor up to
    ``sqrt(n)``, or None (``n`` prime, or too long)."""
    n1 = next((d for d in range(int(np.sqrt(n)), 1, -1) if n % d == 0), None)
    return None if n1 is None or n // n1 > MAX_LENGTH else (n1, n // n1)


def _four_step(bb, re, im, n: int, inverse: bool):
    """Full complex transform of ``(re, im)`` ``[B, n]`` (``im`` may be None) by the four-step decomposition
    ``n = N1 N2`` (:func:`four_step_factors`): a length-``N1`` transform as a product with a constant ``[N1, N1]``
    matrix, twiddles ``exp(+-2 pi i k1 n2 / n)``, a length-``N2`` transform as a product with ``[N2, N2]``, one
    transpose; ``O(n (N1 + N2))`` multiply-adds in dense products (what GPUs run best; FlashFFTConv's idea)."""
    n1, n2 = four_step_factors(n)
    batch = shape(re)[0]
    sign = 1.0 if inverse else -1.0
    # complex products as one real product each: [[Fr, -Fi], [Fi, Fr]] @ [xr; xi] on the left, and
    # [br, bi] @ [[Fr, Fi], [-Fi, Fr]] on the right (one dense product per step, no pairs to fuse)
    cos1, sin1 = _matrices(n1, n1, sign, 1.0 / n if inverse else 1.0)  # symmetric: F[k, t] = F[t, k]
    x = bb.emit(op.reshape(re, (batch, n1, n2)))  # x[b, n1, n2] = x[b, N2 n1 + n2]
    if im is None:
        left = np.concatenate([cos1, sin1], axis=0)  # [2 K1, N1]
    else:
        left = np.block([[cos1, -sin1], [sin1, cos1]])  # [2 K1, 2 N1]
        x = bb.emit(op.concat([x, op.reshape(im, (batch, n1, n2))], axis=1))
    a = bb.emit(op.matmul(relax.const(np.ascontiguousarray(left, dtype=np.float32)), x))  # [B, 2 K1, N2]
    ar = bb.emit(op.strided_slice(a, axes=[1], begin=[0], end=[n1]))
    ai = bb.emit(op.strided_slice(a, axes=[1], begin=[n1], end=[2 * n1]))
    angle = 2.0 * np.pi * (np.arange(n1)[:, None] * np.arange(n2)[None, :] % n) / n
    tr = relax.const(np.cos(angle).astype(np.float32))
    ti = relax.const((sign * np.sin(angle)).astype(np.float32))
    br = op.subtract(op.multiply(ar, tr), op.multiply(ai, ti))
    bi = op.add(op.multiply(ar, ti), op.multiply(ai, tr))
    b = bb.emit(op.concat([br, bi], axis=2))  # [B, K1, 2 N2]
    cos2, sin2 = _matrices(n2, n2, sign, 1.0)
    right = np.block([[cos2, sin2], [-sin2, cos2]])  # [2 N2, 2 K2]
    y = bb.emit(op.matmul(b, relax.const(np.ascontiguousarray(right, dtype=np.float32))))  # [B, K1, 2 K2]
    y = bb.emit(op.permute_dims(op.reshape(y, (batch, n1, 2, n2)), [0, 2, 3, 1]))  # [B, 2, K2, K1]
    flat = bb.emit(op.reshape(y, (batch, 2, n)))  # X[k1 + N1 k2]: k2-major
    return (bb.emit(op.squeeze(op.strided_slice(flat, axes=[1], begin=[0], end=[1]), [1])),
            bb.emit(op.squeeze(op.strided_slice(flat, axes=[1], begin=[1], end=[2]), [1])))


def _transform_fft(bb, re, im, n: int, *, inverse: bool, onesided: bool, target):
    """A transform through a full complex FFT: sparseforge's FFT kernel on CPU targets (``target``), the
    four-step decomposition otherwise (``target`` None)."""

    def full(re, im, inv):
        if target is None:
            return _four_step(bb, re, im, n, inv)
        return _parts(bb, _fft(bb, re, im, n, inv, target))

    length = shape(re)[1]
    if inverse and onesided:  # rebuild the Hermitian spectrum from bins 0..n/2, then a complex inverse
        bins = n // 2 + 1
        re = _resize(bb, re, length, bins)
        index = np.concatenate([np.arange(bins), np.arange(n // 2 - 1, 0, -1)]).astype(np.int64)
        sign = np.concatenate([[0.0], np.ones(n // 2 - 1), [0.0], -np.ones(n // 2 - 1)]).astype(np.float32)
        full_re = bb.emit(op.take(re, relax.const(index), axis=1))
        full_im = None
        if im is not None:
            im = _resize(bb, im, length, bins)
            full_im = bb.emit(op.multiply(op.take(im, relax.const(index), axis=1), relax.const(sign)))
        out_re, _ = full(full_re, full_im, True)
        return out_re, None
    re = _resize(bb, re, length, n)
    im = None if im is None else _resize(bb, im, length, n)
    out_re, out_im = full(re, im, inverse)
    if onesided and not inverse:
        bins = n // 2 + 1
        out_re, out_im = (bb.emit(op.strided_slice(v, axes=[1], begin=[0], end=[bins])) for v in (out_re, out_im))
    return out_re, out_im


def transform(bb, re, im, n: int, *, inverse: bool, onesided: bool, target=None):
    """``(re, im)`` (``[B, L]`` float32, ``im`` may be None) transformed over ``n`` points: ``(re, im)`` of the
    result (``im`` None for a one-sided inverse). ``target``: a CPU kernel target (the FFT kernel) or None."""
    length = shape(re)[1]
    if target is not None and getattr(target, "lanes", None) and n >= MIN_FFT and not n & (n - 1):
        return _transform_fft(bb, re, im, n, inverse=inverse, onesided=onesided, target=target)
    if n >= MIN_FOUR_STEP and four_step_factors(n) is not None:
        return _transform_fft(bb, re, im, n, inverse=inverse, onesided=onesided, target=None)
    if n > MAX_LENGTH:
        raise UnsupportedOpError(f"a DFT of {n} points ({n} has no factors N1 <= N2 <= {MAX_LENGTH} for the "
                                 f"four-step transform, and matrices are built up to {MAX_LENGTH})")

    def mm(x, m):
        return bb.emit(op.matmul(x, relax.const(np.ascontiguousarray(m, dtype=np.float32))))

    if inverse and onesided:  # irfft: bins 0..n/2 of a Hermitian spectrum -> real signal
        bins = n // 2 + 1
        re = _resize(bb, re, length, bins)
        weights = np.full(bins, 2.0)
        weights[0] = 1.0
        if n % 2 == 0:
            weights[-1] = 1.0
        cos, sin = _matrices(n, bins, 1.0, 1.0 / n, weights)  # [n, bins]
        out = mm(re, cos.T)
        if im is not None:
            out = bb.emit(op.subtract(out, mm(_resize(bb, im, length, bins), sin.T)))
        return out, None
    re = _resize(bb, re, length, n)
    im = None if im is None else _resize(bb, im, length, n)
    bins = n // 2 + 1 if onesided and not inverse else n
    sign = 1.0 if inverse else -1.0  # exp(sign * i * angle)
    cos, sin = _matrices(n, bins, sign, 1.0 / n if inverse else 1.0)
    out_re, out_im = mm(re, cos), mm(re, sin)
    if im is not None:  # (re + i im)(cos + i sin) = re cos - im sin + i (re sin + im cos)
        out_re = bb.emit(op.subtract(out_re, mm(im, sin)))
        out_im = bb.emit(op.add(out_im, mm(im, cos)))
    return out_re, out_im


def _along(bb, x, axis: int, body):
    """Apply ``body(re, im) -> (re, im | None)`` (``[B, L]`` each) along ``axis`` of ``x [..., L, ..., c]``; the
    result keeps ``x``'s layout with the new length and complex dimension."""
    dims = shape(x)
    rank = len(dims)
    order = [d for d in range(rank - 1) if d != axis] + [axis, rank - 1]
    moved = bb.emit(op.permute_dims(x, order)) if order != list(range(rank)) else x
    lead = [dims[d] for d in order[:-2]]
    batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
    flat = bb.emit(op.reshape(moved, (batch, dims[axis], dims[-1])))
    re = bb.emit(op.squeeze(op.strided_slice(flat, axes=[2], begin=[0], end=[1]), [2]))
    im = bb.emit(op.squeeze(op.strided_slice(flat, axes=[2], begin=[1], end=[2]), [2])) if dims[-1] == 2 else None
    out_re, out_im = body(re, im)
    parts = [out_re] if out_im is None else [out_re, out_im]
    stacked = bb.emit(op.stack(parts, axis=2))
    length = shape(out_re)[1]
    result = bb.emit(op.reshape(stacked, (*lead, length, len(parts))))
    inverse = [order.index(d) for d in range(rank)]
    return op.permute_dims(result, inverse) if inverse != list(range(rank)) else result


def dft(bb, inputs, attrs):
    x, length_in, axis_in = padded(inputs, 3)
    node = attrs.get("tvm_custom", {}).get("name", "") or "DFT"
    opset = int(attrs.get("tvm_custom", {}).get("opset", 17))
    if dtype(x) != "float32":
        raise UnsupportedOpError(f"DFT node '{node}': {dtype(x)} input (sparseforge's DFT is float32)")
    rank = len(shape(x))
    axis = _int_input(axis_in, "axis", node) if opset >= 20 else None
    axis = (axis if axis is not None else (-2 if opset >= 20 else int(attrs.get("axis", 1)))) % rank
    if axis == rank - 1:
        raise UnsupportedOpError(f"DFT node '{node}': axis is the complex dimension")
    inverse, onesided = bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0))
    n = _int_input(length_in, "dft_length", node)
    if n is None:
        n = 2 * (shape(x)[axis] - 1) if inverse and onesided else shape(x)[axis]
    target = attrs.get("tvm_custom", {}).get("kernel_target")
    return _along(bb, x, axis, lambda re, im: transform(bb, re, im, n, inverse=inverse, onesided=onesided,
                                                        target=target))


def stft(bb, inputs, attrs):
    x, step_in, window, length_in = padded(inputs, 4)
    node = attrs.get("tvm_custom", {}).get("name", "") or "STFT"
    if dtype(x) != "float32":
        raise UnsupportedOpError(f"STFT node '{node}': {dtype(x)} input (sparseforge's STFT is float32)")
    batch, length, c = shape(x)
    step = _int_input(step_in, "frame_step", node)
    frame = _int_input(length_in, "frame_length", node)
    if frame is None:
        frame = shape(window)[0] if window is not None else length
    frames = 1 + (length - frame) // step
    index = (np.arange(frames)[:, None] * step + np.arange(frame)[None, :]).reshape(-1).astype(np.int64)
    framed = bb.emit(op.take(x, relax.const(index), axis=1))  # [B, frames * frame, c]
    if window is not None:
        tiled = bb.emit(op.tile(op.reshape(window, (frame, 1)), (frames, 1)))  # [frames * frame, 1]
        framed = bb.emit(op.multiply(framed, tiled))
    framed = bb.emit(op.reshape(framed, (batch, frames, frame, c)))
    onesided = bool(attrs.get("onesided", 1))
    target = attrs.get("tvm_custom", {}).get("kernel_target")
    return _along(bb, framed, 2, lambda re, im: transform(bb, re, im, frame, inverse=False, onesided=onesided,
                                                          target=target))


CONVERTERS = {"DFT": dft, "STFT": stft}
