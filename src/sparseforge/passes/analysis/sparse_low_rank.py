"""Fact ``sparse_low_rank``: ``{"rank": r, "density": d}`` when the weight is exactly a rank-``r`` part plus a
residual at density ``d`` (:func:`sparseforge.ir.forms.sparse_low_rank.decompose`), else null. Tested only with
the rank analysis, on float weights denser than the residual may be (sparser weights are the sparse kernels'
business) and not already low rank (the ``rank`` fact covers them).

No column of its own: the table marks such a layer's ``op`` cell with ``(rank r + sparse d)``. ``compile``'s
``SparseLowRank`` pass splits such layers where the cost model says it pays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.forms import low_rank, sparse_low_rank
from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact

#: Weights smaller than this are not tested (the refutation alone costs more than they could gain).
MIN_ELEMENTS = 4096


class SparseLowRankFact(Fact):
    name = "sparse_low_rank"
    fields = ("sparse_low_rank",)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> dict | None:
        if not options.with_rank or matrix.dtype.kind != "f" or matrix.ndim != 2 or matrix.size < MIN_ELEMENTS:
            return None
        if np.count_nonzero(matrix) <= sparse_low_rank.MAX_DENSITY * matrix.size:
            return None
        n, k = matrix.shape
        if low_rank.factor(matrix, low_rank.break_even_rank(n, k))[0] is not None:
            return None
        parts, _ = sparse_low_rank.decompose(matrix, low_rank.break_even_rank(n, k))
        return None if parts is None else {"rank": parts.rank, "density": round(parts.density, 4)}

    def op_note(self, fields: Mapping[str, Any]) -> str:
        split = fields["sparse_low_rank"]
        return f" (rank {split['rank']} + sparse {split['density']:.2f})" if split else ""


FACT = SparseLowRankFact()
