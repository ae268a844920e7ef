"""Monarch: a weight ``W[N, K]`` (the ``(output, reduction)`` view) that is exactly the product of two
block-diagonal factors with a fixed permutation between them (Dao et al., 2022).

Index the reduction as ``k = a * C + c`` (``A`` blocks of ``C`` inputs) and the output as ``n = g * F + f``
(order ``"gf"``, Monarch's ``P L P^T R``) or ``n = f * G + g`` (order ``"fg"``). Then

    W[n, k] = L[f, g, a] * R[a, f, c]

with ``R[A, F, C]`` (``A`` blocks mapping ``C`` inputs to ``F``) and ``L[F, G, A]`` (``F`` blocks mapping ``A``
to ``G``): ``x @ W.T`` is ``z[a, f] = sum_c R[a, f, c] x[a, c]`` then ``y[g, f] = sum_a L[f, g, a] z[a, f]``,
``A F (C + G)`` weights instead of ``N K``. A weight is Monarch exactly when every slice ``T[f, a] = W[(g, f),
(a, c)]`` (a ``G x C`` matrix) has rank at most 1, so the projection has a closed form: the best rank-1 fit of each
slice. :func:`find` returns the factors when that projection reproduces ``W`` at fp32 tolerance
(:func:`sparseforge.ir.forms.low_rank.reconstruction_rtol`), else None with the reason.

Candidate block shapes are tried from the most balanced (``A ~ sqrt(K)``, ``F ~ sqrt(N)``) outwards; a few random
slices refute a candidate before the whole weight is projected.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sparseforge.ir.forms.low_rank import reconstruction_rtol

#: The two factors together must hold at most this fraction of the dense weight's elements.
MAX_STORED_FRACTION = 0.25
#: Random slices tested (second singular value of a ``PROBE x PROBE`` submatrix) before a candidate is projected
#: in full.
PROBES = 8
PROBE = 8
#: Candidates projected in full (each passed the probes) before the weight is declared not Monarch: a weight that
#: passes many probes but not the projection is near-Monarch, not Monarch.
MAX_PROJECTIONS = 3
#: Output orders tried: ``"gf"`` (``n = g * F + f``) and ``"fg"`` (``n = f * G + g``).
ORDERS = ("gf", "fg")


@dataclasses.dataclass(frozen=True)
class Monarch:
    """``W[(g, f) or (f, g), (a, c)] = l[f, g, a] * r[a, f, c]``; ``error`` the relative Frobenius error."""

    r: np.ndarray  # [A, F, C]
    l: np.ndarray  # [F, G, A]  # noqa: E741 - the paper's name
    order: str
    error: float

    @property
    def blocks(self) -> tuple[int, int]:
        """``(A, F)``: the block counts of the first and second factor."""
        return int(self.r.shape[0]), int(self.l.shape[0])

    @property
    def stored(self) -> int:
        return int(self.r.size + self.l.size)

    def describe(self) -> str:
        (a, f), (_, g, _), c = self.blocks, self.l.shape, self.r.shape[2]
        return f"Monarch {a} blocks of {f}x{c}, then {f} blocks of {g}x{a} (order {self.order})"

    def dense(self) -> np.ndarray:
        """The ``[N, K]`` weight the factors compute (float64)."""
        return _compose(self.l.astype(np.float64), self.r.astype(np.float64), self.order)


def _compose(l: np.ndarray, r: np.ndarray, order: str) -> np.ndarray:  # noqa: E741
    f, g, a = l.shape
    c = r.shape[2]
    t = np.einsum("fga,afc->fagc", l, r)  # T[f, a, g, c]
    w4 = t.transpose(2, 0, 1, 3) if order == "gf" else t.transpose(0, 2, 1, 3)  # [G, F, A, C] or [F, G, A, C]
    return w4.reshape(g * f, a * c)


def _slices(w: np.ndarray, a: int, f: int, order: str) -> np.ndarray:
    """``T[f, a, g, c]``: the ``G x C`` slice of every block pair."""
    n, k = w.shape
    g, c = n // f, k // a
    if order == "gf":
        return w.reshape(g, f, a, c).transpose(1, 2, 0, 3)
    return w.reshape(f, g, a, c).transpose(0, 2, 1, 3)


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n // 2 + 1) if n % d == 0]


def candidates(n: int, k: int) -> list[tuple[int, int]]:
    """``(A, F)`` pairs whose factors hold at most :data:`MAX_STORED_FRACTION` of the weight, smallest first (then
    the most balanced)."""
    pairs = []
    for a in _divisors(k):
        for f in _divisors(n):
            stored = a * f * (k // a + n // f)
            if stored <= MAX_STORED_FRACTION * n * k:
                pairs.append((stored, abs(np.log(a * a / k)) + abs(np.log(f * f / n)), a, f))
    return [(a, f) for _, _, a, f in sorted(pairs)]


def _refuted(t: np.ndarray, rng: np.random.Generator, tol: float, probes: int = PROBES) -> bool:
    """True when a random ``PROBE x PROBE`` submatrix of one of :data:`PROBES` random slices has a second singular
    value above ``tol``. Never refutes a Monarch weight: a submatrix's singular values do not exceed its slice's,
    and a slice's second one bounds its distance from rank 1."""
    f, a, g, c = t.shape
    picks_f, picks_a = rng.integers(0, f, probes), rng.integers(0, a, probes)
    rows = rng.integers(0, g, (probes, PROBE))  # a repeated row or column only weakens the probe
    cols = rng.integers(0, c, (probes, PROBE))
    sub = t[picks_f[:, None, None], picks_a[:, None, None], rows[:, :, None], cols[:, None, :]]
    second = np.linalg.svd(sub, compute_uv=False)
    return bool(second.shape[1] > 1 and np.any(second[:, 1] > tol))


def _project(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rank-1 fit of every slice of ``t [F, A, G, C]``: ``u [F, A, G]``, ``v [F, A, C]`` (float64), from the
    row holding each slice's largest element (least squares for ``u`` given that row)."""
    f, a, g, c = t.shape
    flat = np.abs(t).reshape(f, a, g * c).argmax(axis=2)
    rows = flat // c
    v = np.take_along_axis(t, rows[:, :, None, None], axis=2)[:, :, 0, :]  # [F, A, C]
    norm = np.einsum("fac,fac->fa", v, v)
    u = np.einsum("fagc,fac->fag", t, v) / np.where(norm == 0, 1.0, norm)[:, :, None]
    scale = np.sqrt(np.linalg.norm(u, axis=2) / np.where(norm == 0, 1.0, np.sqrt(norm)))  # balance the factors
    scale = np.where(scale == 0, 1.0, scale)
    return u / scale[:, :, None], v * scale[:, :, None]


def project(matrix: np.ndarray, a: int, f: int, order: str = "gf") -> np.ndarray:
    """The nearest Monarch matrix (Frobenius) with ``A = a`` input blocks and ``F = f`` output blocks: the best
    rank-1 fit (truncated SVD) of every ``G x C`` slice (Dao et al.'s projection); float64 ``[N, K]``. Approximate:
    for the data-aware choices of ``compress``."""
    w = np.asarray(matrix, np.float64)
    t = _slices(w, a, f, order)  # [F, A, G, C]
    u, s, vt = np.linalg.svd(t, full_matrices=False)
    root = np.sqrt(s[..., 0])
    left = u[..., :, 0] * root[..., None]  # [F, A, G]
    right = vt[..., 0, :] * root[..., None]  # [F, A, C]
    return _compose(left.transpose(0, 2, 1), right.transpose(1, 0, 2), order)


def find(matrix: np.ndarray, *, seed: int = 0) -> tuple[Monarch | None, str]:
    """Monarch factors of ``matrix [N, K]`` that reproduce it at fp32 tolerance, or None; a reason either way."""
    w = np.asarray(matrix, dtype=np.float64)
    n, k = w.shape
    if not np.all(np.isfinite(w)):
        return None, "non-finite weights"
    norm = float(np.linalg.norm(w))
    if norm == 0.0:
        return None, "all-zero weight"
    pairs = candidates(n, k)
    if not pairs:
        return None, f"{n}x{k} has no block shape whose Monarch factors would be smaller"
    rtol = reconstruction_rtol(k)
    rng = np.random.default_rng(seed)
    dtype = np.asarray(matrix).dtype
    projections = 0
    for a, f in pairs:
        for order in ORDERS:
            t = _slices(w, a, f, order)
            if _refuted(t, rng, rtol * norm, 1) or _refuted(t, rng, rtol * norm):
                continue
            if projections == MAX_PROJECTIONS:
                return None, (f"not a Monarch product of {n}x{k} at fp32 tolerance ({MAX_PROJECTIONS} block shapes "
                              "that passed sampled slices did not reproduce it: near-Monarch at best)")
            projections += 1
            u, v = _project(t)  # T[f, a] ~= u[f, a] v[f, a]^T
            l = np.ascontiguousarray(u.transpose(0, 2, 1)).astype(dtype)  # [F, G, A]  # noqa: E741
            r = np.ascontiguousarray(v.transpose(1, 0, 2)).astype(dtype)  # [A, F, C]
            error = float(np.linalg.norm(w - _compose(l.astype(np.float64), r.astype(np.float64), order))) / norm
            if error <= rtol:
                found = Monarch(r, l, order, error)
                return found, (f"{found.describe()}: {found.stored} of {n * k} weights "
                               f"(factors reproduce it to {error:.1g})")
    return None, f"not a Monarch product of {n}x{k} at fp32 tolerance ({len(pairs)} block shapes tried)"
