"""N:M structured sparsity (at most N nonzeros in every M consecutive reduction elements)."""

from __future__ import annotations

#: N:M patterns sparseforge analyses and builds kernels for, in the order a decision tries them.
PATTERNS: tuple[tuple[int, int], ...] = ((1, 4), (2, 8), (2, 4), (4, 8))
