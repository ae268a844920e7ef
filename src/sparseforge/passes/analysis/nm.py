"""Fact ``nm``: per N:M pattern, the fraction of groups of M consecutive reduction elements holding <= N nonzeros.

Patterns come from :data:`sparseforge.ir.forms.nm.PATTERNS`; results are keyed ``"N:M"`` in ``(N, M)`` order. A
row's last partial group is padded with zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.forms.nm import PATTERNS
from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact

#: The analysed patterns in JSON/table order.
ORDERED_PATTERNS: tuple[tuple[int, int], ...] = tuple(sorted(PATTERNS))


def nm_compliance(matrix: np.ndarray, n: int, m: int) -> float:
    """Fraction of groups of ``m`` consecutive elements along axis 1 with at most ``n`` nonzeros."""
    rows, cols = matrix.shape
    if rows == 0 or cols == 0:
        return 1.0
    groups = -(-cols // m)
    nz = matrix != 0
    if groups * m != cols:
        nz = np.pad(nz, ((0, 0), (0, groups * m - cols)))
    counts = nz.reshape(rows, groups, m).sum(axis=2)
    return float(np.count_nonzero(counts <= n)) / counts.size


def _ratio(key: str) -> float:
    n, m = key.split(":")
    return int(n) / int(m)


def best_nm(nm: Mapping[str, float]) -> tuple[str, float] | None:
    """The sparsest N:M pattern with full compliance, else the best-complying one."""
    full = [(k, v) for k, v in nm.items() if v >= 1.0]
    if full:
        return min(full, key=lambda kv: _ratio(kv[0]))
    if not nm:
        return None
    return max(nm.items(), key=lambda kv: (kv[1], -_ratio(kv[0])))


class NmCompliance(Fact):
    name = "nm"
    fields = ("nm",)
    columns = (("best N:M", "left"),)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> dict[str, float]:
        return {f"{n}:{m}": nm_compliance(matrix, n, m) for n, m in ORDERED_PATTERNS}

    def cells(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        best = best_nm(fields["nm"])
        return (f"{best[0]} ({best[1]:.0%})" if best else "-",)


FACT = NmCompliance()
