"""Fact ``rank``: numerical rank at fp32 tolerance and the 99%-energy rank.

``rank`` counts singular values above ``s_max * max(m, n) * eps(float32)``; ``rank_99`` is the fewest singular
values holding 99% of ``sum s_i^2``. Exact SVD up to ``max_svd_dim``; above it a randomized range finder proves a
low rank when one exists. ``rank_method`` says which, and ``rank`` is ``None`` when the rank is only bounded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.linalg

from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact

RANK_ENERGY = 0.99


@dataclasses.dataclass
class RankInfo:
    rank: int | None
    rank_99: int | None
    method: str


def rank_info(matrix: np.ndarray, max_svd_dim: int = 2048, sketch: int = 256, seed: int = 0) -> RankInfo:
    """Numerical rank at fp32 tolerance and the 99%-energy rank.

    Exact (``scipy.linalg.svdvals``) when ``min(shape) <= max_svd_dim``; otherwise a randomized range finder
    with ``sketch`` columns: if the residual is below tolerance the rank is proven at most ``sketch`` and the
    spectrum is exact to fp32; else ``rank`` is None and ``rank_99`` is given only if the captured singular values
    already hold 99% of the energy (``||W||_F^2`` is exact).
    """
    a = np.asarray(matrix, dtype=np.float32)
    m, n = a.shape
    if a.size == 0 or not np.any(a):
        return RankInfo(0, 0, "exact")
    if not np.all(np.isfinite(a)):
        return RankInfo(None, None, "skipped: non-finite values")
    eps = float(np.finfo(np.float32).eps)
    total_energy = float(np.sum(a.astype(np.float64) ** 2))
    if min(m, n) <= max_svd_dim:
        s = scipy.linalg.svdvals(a, check_finite=False).astype(np.float64)
        tol = s[0] * max(m, n) * eps
        return RankInfo(int(np.count_nonzero(s > tol)), _energy_rank(s, float(np.sum(s ** 2))), "exact")
    k = min(sketch, min(m, n))
    rng = np.random.default_rng(seed)
    wide = (a if m <= n else a.T).astype(np.float64)  # rows = smaller side
    omega = rng.standard_normal((wide.shape[1], k + 8))
    q, _ = np.linalg.qr(wide @ omega)
    proj = q.T @ wide
    s = scipy.linalg.svdvals(proj, check_finite=False)
    residual = float(np.linalg.norm(wide - q @ proj))  # Frobenius norm bounds sigma_{k+9}
    tol = s[0] * max(m, n) * eps
    r99 = _energy_rank(s, total_energy, allow_incomplete=True)
    if residual <= tol:
        return RankInfo(int(np.count_nonzero(s > tol)), r99, f"randomized (sketch {k}, exact below it)")
    return RankInfo(None, r99, f"bounded: rank > {k} (matrix larger than max_svd_dim={max_svd_dim})")


def _energy_rank(s: np.ndarray, total: float, allow_incomplete: bool = False) -> int | None:
    if total <= 0:
        return 0
    cumulative = np.cumsum(s ** 2)
    hit = np.flatnonzero(cumulative >= RANK_ENERGY * total * (1 - 1e-12))
    if hit.size == 0:
        return None if allow_incomplete else len(s)
    return int(hit[0]) + 1


class Rank(Fact):
    name = "rank"
    fields = ("rank", "rank_99", "rank_method")
    columns = (("rank / 99%", "right"),)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> RankInfo:
        if not options.with_rank:
            return RankInfo(None, None, "skipped: --no-rank")
        return rank_info(matrix, options.max_svd_dim)

    def to_fields(self, value: RankInfo) -> dict[str, Any]:
        return {"rank": value.rank, "rank_99": value.rank_99, "rank_method": value.method}

    def cells(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        rank, rank_99 = fields["rank"], fields["rank_99"]
        if rank is None and rank_99 is None:
            return ("-",)
        return (f"{'?' if rank is None else rank} / {'?' if rank_99 is None else rank_99}",)


FACT = Rank()
