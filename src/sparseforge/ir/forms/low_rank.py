"""Low rank: a weight ``W[N, K]`` (the ``(output, reduction)`` view) of numerical rank ``r`` stored as two factors.

``W = U @ V`` with ``U[N, r]`` and ``V[r, K]`` (the singular values split evenly between them), computed in
float64 and stored in the weight's dtype. Exact at fp32 tolerance: :func:`factor` returns factors only when the
weight's rank at fp32 tolerance (singular values above ``s_max * max(N, K) * eps``) is at most ``max_rank``
and the factors reproduce ``W`` to :func:`reconstruction_rtol` (relative Frobenius error), else None with the
reason. ``x @ W.T`` becomes ``(x @ V.T) @ U.T``: two thin standard MatMuls, which every target and ONNX Runtime
run as they are (no ``ai.sparseforge`` op). Not one of the sparse :data:`~sparseforge.ir.forms.FORMS`: it
changes the graph, not the encoding of one operand.

Large weights are not decomposed in full: a randomized range finder with ``max_rank + 8`` columns (float64)
proves the rank when its residual is below tolerance, in ``O(N K max_rank)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

#: The factors must reproduce the weight to this relative Frobenius error, or to ``2 * eps * sqrt(K)`` if larger:
#: the rounding the dense product itself carries over a length-K reduction (a near-low-rank weight with 1e-4
#: relative noise is far above either).
RECONSTRUCTION_RTOL = 2e-6


def reconstruction_rtol(k: int) -> float:
    """The relative Frobenius error allowed for the factors of a weight with reduction length ``k``."""
    return max(RECONSTRUCTION_RTOL, 2.0 * float(np.finfo(np.float32).eps) * float(np.sqrt(k)))
#: Oversampling of the randomized range finder.
OVERSAMPLE = 8


@dataclasses.dataclass(frozen=True)
class Factors:
    """``W ~= u @ v``: ``u[N, r]``, ``v[r, K]``; ``error`` the relative Frobenius reconstruction error."""

    u: np.ndarray
    v: np.ndarray
    error: float

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])


def break_even_rank(n: int, k: int, fraction: float = 0.5) -> int:
    """The largest rank whose two factors hold at most ``fraction`` of the ``n x k`` weight's elements."""
    return int(fraction * n * k // (n + k))


def _sketch_sizes(max_rank: int, limit: int) -> list[int]:
    """Growing sketch widths (x4 from 32, plus :data:`OVERSAMPLE`) up to ``max_rank + OVERSAMPLE``: a weight of
    low rank is proven with a narrow sketch, cheaply."""
    sizes, width = [], 32
    while width < max_rank:
        sizes.append(min(width + OVERSAMPLE, limit))
        width *= 4
    sizes.append(min(max_rank + OVERSAMPLE, limit))
    return sorted(set(sizes))


def factor(matrix: np.ndarray, max_rank: int, *, seed: int = 0) -> tuple[Factors | None, str]:
    """Factors of ``matrix [N, K]`` with rank at most ``max_rank`` that reproduce it at fp32 tolerance, or None;
    with a reason either way (what was found)."""
    w = np.asarray(matrix, dtype=np.float64)
    n, k = w.shape
    if max_rank < 1 or w.size == 0:
        return None, "too small to gain from factoring"
    if not np.all(np.isfinite(w)):
        return None, "non-finite weights"
    norm = float(np.linalg.norm(w))
    if norm == 0.0:
        return None, "all-zero weight (ShrinkChannels removes it)"
    eps = float(np.finfo(np.float32).eps)
    rng = np.random.default_rng(seed)
    # a lower bound of s_max (power iteration) makes the refutation below conservative: a weight whose rank sits
    # at the tolerance is left dense, never factored wrongly
    probe = rng.standard_normal(k)
    for _ in range(6):
        probe = w.T @ (w @ probe)
        probe /= np.linalg.norm(probe) or 1.0
    tol_low = float(np.linalg.norm(w @ probe)) * max(n, k) * eps
    if min(n, k) > max_rank + 1:
        # singular values of a submatrix never exceed the matrix's (interlacing): a random (R+1) x (R+17) block
        # with R+1 singular values above the tolerance proves a rank above R
        rows = rng.choice(n, max_rank + 1, replace=False)
        cols = rng.choice(k, min(k, max_rank + 1 + 16), replace=False)
        block = scipy.linalg.svdvals(w[np.ix_(rows, cols)], check_finite=False)
        if int(np.count_nonzero(block > tol_low)) > max_rank:
            return None, f"rank above {max_rank} of {n}x{k} (the break-even rank): not low rank"
    for sketch in _sketch_sizes(max_rank, min(n, k)):
        if sketch >= min(n, k):  # small: exact SVD
            left, s, right = scipy.linalg.svd(w, full_matrices=False, check_finite=False)
            break
        q, _ = np.linalg.qr(w @ rng.standard_normal((k, sketch)))
        b = q.T @ w
        residual = float(np.linalg.norm(w - q @ b))
        if residual <= reconstruction_rtol(k) * norm:
            ub, s, right = scipy.linalg.svd(b, full_matrices=False, check_finite=False)
            left = q @ ub
            break
    else:
        return None, (f"rank above {max_rank} at fp32 tolerance (a {sketch}-column sketch leaves "
                      f"{residual / norm:.2g} of the weight): not low rank")
    tol = s[0] * max(n, k) * eps
    rank = int(np.count_nonzero(s > tol))
    if rank > max_rank:
        return None, f"rank {rank} of {n}x{k}: factors would not be smaller than {max_rank} (break-even)"
    root = np.sqrt(s[:rank])
    u = left[:, :rank] * root
    v = root[:, None] * right[:rank]
    dtype = np.asarray(matrix).dtype
    u32, v32 = u.astype(dtype), v.astype(dtype)
    error = float(np.linalg.norm(w - u32.astype(np.float64) @ v32.astype(np.float64))) / norm
    if error > reconstruction_rtol(k):
        return None, f"rank {rank} only approximately: the factors leave {error:.2g} of the weight (not exact)"
    return Factors(u32, v32, error), f"rank {rank} of {n}x{k} (factors reproduce it to {error:.1g})"
