"""Weight analysis as a registry of facts: one module per fact, :data:`FACTS` in table/JSON order.

Each fact (see :class:`~sparseforge.passes.analysis.fact.Fact`) computes one value from a weight's
``(output, reduction)`` matrix, names its JSON field(s) and renders its inspect-table column(s).
:class:`~sparseforge.passes.analysis.analyse.StructureAnalysisPass` runs them all and stores, per weight-bearing
node, ``node.meta[keys.META_FACTS] = {fact name: value}`` (read it with ``analyse.facts_of``) and the
JSON-ready :class:`WeightStructure` under ``keys.META_STRUCTURE``.

To add a fact: write its module, append it to :data:`FACTS`, add its field(s) to :class:`WeightStructure`.
"""

from __future__ import annotations

from sparseforge.passes.analysis import (blocks, channels, density, diagonal_blocks, long_conv, monarch, nm, rank,
                                        sparse_low_rank)
from sparseforge.passes.analysis.fact import AnalysisOptions, Fact
from sparseforge.passes.analysis.structure import IDENTITY_FIELDS, WeightStructure

#: Registered facts, in the order of their JSON fields and table columns.
FACTS: tuple[Fact, ...] = (density.FACT, nm.FACT, blocks.FACT, channels.FACT, rank.FACT, long_conv.FACT,
                           diagonal_blocks.FACT, monarch.FACT, sparse_low_rank.FACT)

_BY_NAME = {fact.name: fact for fact in FACTS}


def get(name: str) -> Fact:
    """The registered fact called ``name`` (KeyError listing the known names otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no analysis fact '{name}' (known: {', '.join(_BY_NAME)})") from None


def names() -> tuple[str, ...]:
    """Names of the registered facts, in order."""
    return tuple(_BY_NAME)


__all__ = ["FACTS", "IDENTITY_FIELDS", "AnalysisOptions", "Fact", "WeightStructure", "get", "names"]
