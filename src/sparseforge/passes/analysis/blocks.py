"""Fact ``blocks``: per block shape ``rows x cols``, the fraction of all-zero blocks (``block_zero_fraction``).

Shapes come from :data:`sparseforge.ir.forms.bsr.BLOCK_SHAPES`, keyed ``"RxC"``. Blocks at the matrix edge are
partial (padded with zeros) and count as zero when their existing elements are all zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseforge.ir.forms.bsr import BLOCK_SHAPES, nonzero_blocks  # noqa: F401 - nonzero_blocks re-exported
from sparseforge.ir.weights import WeightView
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact

# JSON/table order of the shapes (the order inspect has always printed; it also breaks ties in best_block).
# Shapes not listed here follow, in BLOCK_SHAPES order.
_DISPLAY_RANK = {shape: i for i, shape in enumerate(((1, 4), (4, 1), (4, 4), (8, 1), (1, 8), (16, 1), (16, 16)))}

#: The analysed block shapes in JSON/table order.
ORDERED_SHAPES: tuple[tuple[int, int], ...] = tuple(
    sorted(BLOCK_SHAPES, key=lambda s: _DISPLAY_RANK.get(s, len(_DISPLAY_RANK))))


def zero_block_fraction(matrix: np.ndarray, br: int, bc: int) -> float:
    """Fraction of ``br x bc`` blocks that are entirely zero (partial edge blocks included)."""
    if matrix.size == 0:
        return 1.0
    blocks = nonzero_blocks(matrix, br, bc)
    return 1.0 - float(np.count_nonzero(blocks)) / blocks.size


def _area(key: str) -> int:
    r, c = key.split("x")
    return int(r) * int(c)


def best_block(fractions: Mapping[str, float]) -> tuple[str, float] | None:
    """The block shape with the largest zero-block fraction (ties: larger blocks, then the first listed)."""
    if not fractions:
        return None
    return max(fractions.items(), key=lambda kv: (round(kv[1], 6), _area(kv[0])))


class ZeroBlocks(Fact):
    name = "blocks"
    fields = ("block_zero_fraction",)
    columns = (("best block", "left"),)

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> dict[str, float]:
        return {f"{r}x{c}": zero_block_fraction(matrix, r, c) for r, c in ORDERED_SHAPES}

    def cells(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        best = best_block(fields["block_zero_fraction"])
        return (f"{best[0]} ({best[1]:.0%})" if best else "-",)


FACT = ZeroBlocks()
