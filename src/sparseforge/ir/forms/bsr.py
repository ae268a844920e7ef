"""Block-sparse rows (BSR)."""

from __future__ import annotations

#: Block shapes (rows x cols of the ``(output, reduction)`` weight) sparseforge analyses and builds kernels for,
#: in the order a decision tries them.
BLOCK_SHAPES: tuple[tuple[int, int], ...] = ((4, 1), (8, 1), (16, 1), (1, 4), (1, 8), (4, 4), (16, 16))
