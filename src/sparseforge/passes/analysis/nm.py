"""Fact ``nm``: per N:M pattern, the fraction of groups of M consecutive reduction elements holding <= N nonzeros.

Patterns come from :data:`sparseforge.ir.forms.nm.PATTERNS`; results are keyed ``"N:M"`` in ``(N, M)`` order. A
row's last partial group is padded with zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.forms.nm import PATTERNS
from sparseforge.ir.forms.nm import compliance as nm_compliance
from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact

#: The analysed patterns in JSON/table order.
ORDERED_PATTERNS: tuple[tuple[int, int], ...] = tuple(sorted(PATTERNS))


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
