"""Sparse + low rank: a weight ``W[N, K]`` that is exactly ``U @ V + S`` with ``U[N, r]``, ``V[r, K]`` and a sparse
residual ``S[N, K]`` (a LoRA update merged into a pruned base, a robust-PCA-style factorization kept merged).

Found by alternating projections (AltProj: rank-``r`` truncation of ``W - S``, then hard thresholding of
``W - L`` with a threshold that decays towards zero), with ranks ``1, 2, 4, ...``. A random block of at most
:data:`PROBE` x :data:`PROBE` is decomposed first: a sub-block of ``L + S`` is a rank-``r`` part plus a residual
of the same density, so a weight whose block has no such split is refuted in milliseconds; the whole weight is
then decomposed at the rank the block found. Exact at fp32 tolerance: :func:`decompose` returns the parts only
when ``U @ V + S`` reproduces ``W`` to :func:`~sparseforge.ir.forms.low_rank.reconstruction_rtol` (relative
Frobenius error, with the parts rounded to the weight's dtype), ``S`` keeps at most ``max_density`` of the
elements and the parts do not cancel (``|L| + |S| <= 4 |W|``, Frobenius), else None with the reason.
``x @ W.T`` becomes ``(x @ V.T) @ U.T + x @ S.T``; the sparse kernels then take ``S``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from sparseforge.ir.forms.low_rank import reconstruction_rtol

#: Side of the random block decomposed first (the refutation).
PROBE = 96
#: Largest rank searched (the block must hold several times the rank for the split to be identifiable).
MAX_RANK = 16
#: Densest residual accepted: denser residuals do not gain from a sparse kernel.
MAX_DENSITY = 0.25
#: Iterations per rank (the threshold halves each iteration, from ``sigma_r`` to fp32 rounding).
ITERATIONS = 40
#: Iterations after the split is found, taking the threshold down to the rounding level.
REFINE = 12
#: The parts may not be larger than this multiple of the weight (Frobenius): cancelling parts would add rounding.
MAX_GROWTH = 4.0


@dataclasses.dataclass(frozen=True)
class SparseLowRank:
    """``W ~= u @ v + s``: ``u[N, r]``, ``v[r, K]``, ``s[N, K]`` (mostly zeros), in the weight's dtype;
    ``error`` the relative Frobenius reconstruction error."""

    u: np.ndarray
    v: np.ndarray
    s: np.ndarray
    error: float

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.s)) / max(1, self.s.size)


def _svd(a: np.ndarray, rank: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The leading ``rank + 1`` singular triplets of ``a`` (float64): exact for small matrices, a randomized range
    finder with two power iterations otherwise."""
    n, k = a.shape
    want = rank + 1
    if min(n, k) <= 4 * (want + 10):
        u, s, vt = scipy.linalg.svd(a, full_matrices=False, check_finite=False)
        return u[:, :want], s[:want], vt[:want]
    q, _ = np.linalg.qr(a @ rng.standard_normal((k, want + 10)))
    for _ in range(2):
        q, _ = np.linalg.qr(a.T @ q)
        q, _ = np.linalg.qr(a @ q)
    ub, s, vt = scipy.linalg.svd(q.T @ a, full_matrices=False, check_finite=False)
    return (q @ ub)[:, :want], s[:want], vt[:want]


def _altproj(w: np.ndarray, ranks: list[int], max_density: float, floor: float, rng: np.random.Generator
             ) -> tuple[int, np.ndarray] | None:
    """``(r, S)`` with ``w - S`` of rank ``r`` at fp32 tolerance and ``S`` at most ``max_density`` dense, trying
    ``ranks`` in order, or None. Once a rank splits, :data:`REFINE` more iterations take the threshold down to
    ``floor`` (the rounding level), so the low-rank part is exact and not only within the tolerance."""
    n, k = w.shape
    eps = float(np.finfo(np.float32).eps)
    beta = 1.0 / np.sqrt(min(n, k))
    s_max = float(scipy.linalg.svdvals(w, check_finite=False)[0]) if min(n, k) <= 4 * PROBE else \
        float(_svd(w, 1, rng)[1][0])
    tol = 4.0 * s_max * max(n, k) * eps
    sparse = np.where(np.abs(w) > beta * s_max, w, 0.0)
    for rank in ranks:
        if rank >= min(n, k):
            break
        split_at, history = None, []
        for t in range(ITERATIONS + REFINE):
            u, s, vt = _svd(w - sparse, rank, rng)
            history.append(float(s[rank]))
            if split_at is None and t >= 6 and history[-1] > 0.5 * history[-5]:
                break  # sigma_{r+1} no longer falls: no split at this rank
            if split_at is None and s[rank] <= tol and np.count_nonzero(sparse) <= max_density * w.size:
                split_at = t
            if split_at is not None and t >= split_at + REFINE:
                return rank, sparse
            if split_at is None and t >= ITERATIONS:
                break
            residual = w - (u[:, :rank] * s[:rank]) @ vt[:rank]
            threshold = max(beta * (s[rank] + 0.5 ** t * s[rank - 1]), floor)
            support = np.abs(residual) > threshold
            if np.count_nonzero(support) > 2 * max_density * w.size:
                break  # the residual is dense at this rank: try the next
            sparse = np.where(support, residual, 0.0)
        if split_at is not None:
            return rank, sparse
    return None


def decompose(matrix: np.ndarray, max_rank: int, *, max_density: float = MAX_DENSITY, seed: int = 0
              ) -> tuple[SparseLowRank | None, str]:
    """``U @ V + S`` reproducing ``matrix [N, K]`` at fp32 tolerance with rank at most ``max_rank`` (and
    :data:`MAX_RANK`) and ``S`` at most ``max_density`` dense, or None; with a reason either way."""
    w = np.asarray(matrix, dtype=np.float64)
    n, k = w.shape
    max_rank = min(max_rank, MAX_RANK)
    if max_rank < 1 or min(n, k) < 8:
        return None, "too small to gain from a sparse + low-rank split"
    if not np.all(np.isfinite(w)):
        return None, "non-finite weights"
    norm = float(np.linalg.norm(w))
    if norm == 0.0:
        return None, "all-zero weight"
    density_w = float(np.count_nonzero(w)) / w.size
    if density_w <= max_density:
        return None, f"the weight itself is sparse (density {density_w:.2f}): the sparse kernels take it as it is"
    rng = np.random.default_rng(seed)
    # residual entries at rounding level are dropped; what is dropped stays within the tolerance
    drop = 0.25 * reconstruction_rtol(k) * norm / np.sqrt(w.size)
    ranks = [r for r in (1, 2, 4, 8, 16) if r <= max_rank]
    rows = np.sort(rng.choice(n, min(n, PROBE), replace=False))
    cols = np.sort(rng.choice(k, min(k, PROBE), replace=False))
    block = w[np.ix_(rows, cols)]
    # the largest rank first: most weights (dense, no such split) are refuted by one stage; a split found there is
    # then searched for at the smaller ranks, smallest first
    found = _altproj(block, ranks[-1:], max_density, drop, rng)
    if found is not None and len(ranks) > 1:
        found = _altproj(block, ranks, max_density, drop, rng)
    if found is None:
        return None, (f"not sparse + low rank: a random {len(rows)}x{len(cols)} block is no rank <= {max_rank} "
                      f"part plus a residual at density <= {max_density:g}")
    rank = found[0]
    if len(rows) < n or len(cols) < k:
        found = _altproj(w, [rank, *[r for r in ranks if r > rank]], max_density, drop, rng)
        if found is None:
            return None, f"not sparse + low rank: a block splits at rank {rank}, the whole weight does not"
        rank = found[0]
    u, s, vt = _svd(w - found[1], rank, rng)
    root = np.sqrt(s[:rank])
    low = (u[:, :rank] * s[:rank]) @ vt[:rank]
    dtype = np.asarray(matrix).dtype
    u32, v32 = (u[:, :rank] * root).astype(dtype), (root[:, None] * vt[:rank]).astype(dtype)
    low32 = u32.astype(np.float64) @ v32.astype(np.float64)
    residual = w - low32
    sparse = np.where(np.abs(residual) > drop, residual, 0.0).astype(dtype)
    error = float(np.linalg.norm(residual - sparse.astype(np.float64))) / norm
    density = float(np.count_nonzero(sparse)) / w.size
    if error > reconstruction_rtol(k):
        return None, f"rank {rank} + sparse only approximately: the parts leave {error:.2g} of the weight"
    if not np.count_nonzero(sparse):
        return None, f"exactly rank {rank} (no sparse part): the low-rank form applies"
    if density > max_density:
        return None, f"rank {rank} leaves a residual at density {density:.2f} (> {max_density:g}): not sparse"
    if float(np.linalg.norm(low)) + float(np.linalg.norm(sparse)) > MAX_GROWTH * norm:
        return None, f"rank {rank} + sparse parts cancel (their norms exceed {MAX_GROWTH:g}x the weight's)"
    return SparseLowRank(u32, v32, sparse, error), (
        f"rank {rank} + sparse at density {density:.3f} of {n}x{k} (parts reproduce it to {error:.1g})")
