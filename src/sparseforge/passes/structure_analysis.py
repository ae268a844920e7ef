"""Deprecated import path, kept while other modules still import it: use :mod:`sparseforge.passes.analysis`.

Re-exports only; remove once ``api.py`` and ``passes/sparsify.py`` import from the analysis package.
"""

from __future__ import annotations

from sparseforge.passes.analysis import WeightStructure
from sparseforge.passes.analysis.analyse import StructureAnalysisPass, analyse_view, structure_of
from sparseforge.passes.analysis.blocks import nonzero_blocks, zero_block_fraction
from sparseforge.passes.analysis.channels import dead_input_channels, dead_rows
from sparseforge.passes.analysis.density import density
from sparseforge.passes.analysis.nm import nm_compliance
from sparseforge.passes.analysis.rank import RankInfo, rank_info

__all__ = ["RankInfo", "StructureAnalysisPass", "WeightStructure", "analyse_view", "dead_input_channels",
           "dead_rows", "density", "nm_compliance", "nonzero_blocks", "rank_info", "structure_of",
           "zero_block_fraction"]
