"""Fact ``density``: fraction of weight elements that are not exactly zero."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact


def density(matrix: np.ndarray) -> float:
    """Fraction of elements that are not exactly zero (NaN counts as nonzero)."""
    return float(np.count_nonzero(matrix)) / matrix.size if matrix.size else 0.0


class Density(Fact):
    name = "density"
    fields = ("density",)
    columns = (("density", "right"),)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> float:
        return density(matrix)

    def cells(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        return (f"{fields['density']:.3f}",)


FACT = Density()
