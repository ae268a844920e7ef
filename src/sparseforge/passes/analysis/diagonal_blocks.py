"""Fact ``diagonal_blocks``: how many independent blocks the weight splits into, up to a permutation of rows and
columns (:func:`sparseforge.ir.forms.block_diagonal.find_blocks`); 1 when it does not qualify (one block, more than
64, or blocks holding more than half the weight), 0 for an all-zero weight.

No column of its own: the table marks such a layer's ``op`` cell with ``(N blocks)``. ``BlockDiagonal`` rewrites
MatMul/Gemm layers with 2 or more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.forms.block_diagonal import find_blocks
from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact


class DiagonalBlocks(Fact):
    name = "diagonal_blocks"
    fields = ("diagonal_blocks",)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> int:
        if not np.any(matrix):
            return 0
        blocks, _ = find_blocks(matrix)
        return 1 if blocks is None else blocks.count

    def op_note(self, fields: Mapping[str, Any]) -> str:
        count = fields["diagonal_blocks"]
        return f" ({count} blocks)" if count > 1 else ""


FACT = DiagonalBlocks()
