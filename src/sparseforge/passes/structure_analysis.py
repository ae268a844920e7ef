"""Deprecated import path, kept while ``api.py`` still imports it: use :mod:`sparseforge.passes.analysis`.

Re-exports only; remove once ``api.py`` imports ``WeightStructure`` from :mod:`sparseforge.passes.analysis`.
"""

from __future__ import annotations

from sparseforge.passes.analysis import WeightStructure
from sparseforge.passes.analysis.analyse import StructureAnalysisPass, analyse_view

__all__ = ["StructureAnalysisPass", "WeightStructure", "analyse_view"]
