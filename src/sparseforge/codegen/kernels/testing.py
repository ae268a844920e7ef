"""Helpers for kernel tests and benchmarks: random sparsity patterns and batched numerical checks."""

from __future__ import annotations

import numpy as np

from ._common import SparseKernel
from .measure import Runner, build


def unstructured(rng, n: int, k: int, density: float, *, empty_rows=(), dense_rows=()) -> np.ndarray:
    w = rng.standard_normal((n, k)).astype(np.float32)
    w *= rng.random((n, k)) < density
    for i in empty_rows:
        w[i] = 0
    for i in dense_rows:
        w[i] = rng.standard_normal(k)
    return w


def block_sparse(rng, n: int, k: int, r: int, c: int, density: float, *, empty_block_rows=(),
                 full_block_rows=()) -> np.ndarray:
    """Random blocks of r x c (the last block row/column may be partial) kept with probability ``density``."""
    nb, kb = -(-n // r), -(-k // c)
    mask = rng.random((nb, kb)) < density
    for i in empty_block_rows:
        mask[i] = False
    for i in full_block_rows:
        mask[i] = True
    w = rng.standard_normal((n, k)).astype(np.float32)
    return w * np.kron(mask, np.ones((r, c), bool))[:n, :k]


def n_m_sparse(rng, n: int, k: int, nn: int, group: int, *, thin: float = 0.0) -> np.ndarray:
    """At most ``nn`` nonzeros per ``group`` consecutive weights along K (``thin``: extra random zeros)."""
    g = -(-k // group)
    w = rng.standard_normal((n, g * group)).astype(np.float32).reshape(n, g, group)
    keep = np.argsort(rng.random(w.shape), axis=2)[:, :, :nn]
    mask = np.zeros(w.shape, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    w = (w * mask * (rng.random(w.shape) >= thin)).reshape(n, g * group)
    return np.ascontiguousarray(w[:, :k])


def max_error(y: np.ndarray, ref: np.ndarray) -> float:
    """max |y - ref| / max(1, max |ref|): the error scaled to the output magnitude."""
    return float(np.abs(y.astype(np.float64) - ref).max(initial=0.0) / max(1.0, float(np.abs(ref).max(initial=0))))


def check_kernels(kernels: list[SparseKernel], target=None, *, tol: float = 1e-5, seed: int = 0, lib=None,
                  scale: float = 1.0) -> list[tuple[str, float]]:
    """Compile all kernels into one module, run each on random input, return [(name, error)] above ``tol``.

    Error is ``max |y - ref| / max(1, max |ref|)`` (rtol/atol ``tol`` scaled to the output magnitude)."""
    lib = lib or build(kernels, target)
    rng = np.random.default_rng(seed)
    bad = []
    for k in kernels:
        x = (rng.standard_normal(k.in_shape) * scale).astype(np.float32)
        y = Runner(lib, k, x)()
        ref = k.reference(x)
        if not np.all(np.isfinite(y)):
            bad.append((k.name, float("nan")))
            continue
        err = max_error(y, ref)
        if err > tol:
            bad.append((k.name, err))
    return bad
