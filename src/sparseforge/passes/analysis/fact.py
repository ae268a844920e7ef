"""The contract of one analysis fact, and the options every fact receives.

A :class:`Fact` computes one value from a weight's ``(output, reduction)`` matrix (see
:mod:`sparseforge.ir.weights`), names the JSON field(s) that value becomes (``inspect --json``), and renders those
fields as cells of the inspect table. Facts are pure: they read the view and never change the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from sparseforge.ir.weights import WeightView

Justify = Literal["left", "right"]


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of the analysis (the ``inspect`` options)."""

    with_rank: bool = True
    max_svd_dim: int = 2048


class Fact:
    """One fact about a weight. Subclasses set the class attributes and implement :meth:`compute`.

    * ``name``: registry key, also the key in ``node.meta[keys.META_FACTS]``;
    * ``fields``: the JSON field(s) :meth:`to_fields` returns, in output order;
    * ``columns``: ``(header, justify)`` of each inspect-table column; :meth:`cells` returns one text per column.
    """

    name: str = ""
    fields: tuple[str, ...] = ()
    columns: tuple[tuple[str, Justify], ...] = ()

    def compute(self, view: WeightView, matrix: np.ndarray, options: AnalysisOptions) -> Any:
        """The fact's value for ``view``; ``matrix`` is ``view.matrix()``."""
        raise NotImplementedError

    def to_fields(self, value: Any) -> dict[str, Any]:
        """JSON-ready fields of ``value`` (default: the value itself under the single field)."""
        (field,) = self.fields
        return {field: value}

    def cells(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        """Table cells, one per column, from a layer's JSON fields."""
        return ()

    def op_note(self, fields: Mapping[str, Any]) -> str:
        """Text appended to the table's ``op`` cell (empty by default)."""
        return ""
