"""``WeightStructure``: every fact about one weight as seen by one node, in ``inspect --json`` field order.

Identity fields (node, op, shapes) come first, then the fields of the registered facts in registry order (a test
checks the two stay in step).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sparseforge.passes.analysis.blocks import best_block
from sparseforge.passes.analysis.nm import best_nm

#: Fields describing the layer rather than a fact about its weight.
IDENTITY_FIELDS = ("node", "op_type", "weight", "shape", "stored_shape", "groups", "kernel_shape")


@dataclasses.dataclass
class WeightStructure:
    """Structure of one weight as seen by one node (JSON-ready via :meth:`to_dict`)."""

    node: str
    op_type: str
    weight: str
    shape: tuple[int, int]
    stored_shape: tuple[int, ...]
    groups: int
    kernel_shape: tuple[int, ...]
    density: float
    nm: dict[str, float]
    block_zero_fraction: dict[str, float]
    dead_output_channels: list[int]
    dead_input_channels: list[int]
    rank: int | None
    rank_99: int | None
    rank_method: str
    long_conv: bool
    diagonal_blocks: int
    monarch: list[int] | None
    sparse_low_rank: dict | None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def best_nm(self) -> tuple[str, float] | None:
        """The sparsest N:M pattern with full compliance, else the best-complying one."""
        return best_nm(self.nm)

    def best_block(self) -> tuple[str, float] | None:
        """The block shape with the largest zero-block fraction (ties: larger blocks)."""
        return best_block(self.block_zero_fraction)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["stored_shape"] = list(self.stored_shape)
        d["kernel_shape"] = list(self.kernel_shape)
        return d
