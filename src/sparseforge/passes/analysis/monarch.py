"""Fact ``monarch``: ``[A, F]``, the block counts of the two block-diagonal factors when the weight is exactly a
Monarch product (:func:`sparseforge.ir.forms.monarch.find`), else null. Only weights at least half nonzero are
tested (sparser ones are the sparse and grouped forms' business), and only with the rank analysis (``inspect
--no-rank`` and the decision passes of ``compile`` skip both: the ``Monarch`` rewrite tests the weights itself).

No column of its own: the table marks such a layer's ``op`` cell with ``(Monarch AxF)``. ``Monarch`` rewrites
MatMul/Gemm layers that have it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.forms.monarch import find
from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact


class MonarchFact(Fact):
    name = "monarch"
    fields = ("monarch",)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> list[int] | None:
        if not options.with_rank or matrix.dtype.kind != "f" or np.count_nonzero(matrix) < matrix.size // 2:
            return None
        found, _ = find(matrix)
        return None if found is None else list(found.blocks)

    def op_note(self, fields: Mapping[str, Any]) -> str:
        blocks = fields["monarch"]
        return f" (Monarch {blocks[0]}x{blocks[1]})" if blocks else ""


FACT = MonarchFact()
