"""Deprecated import path, kept while other modules still import it: use :mod:`sparseforge.passes.rewrites.prune`.

Re-exports only; remove once ``api.py``, ``cli.py`` and the tests importing it use the new path.
"""

from __future__ import annotations

from sparseforge.passes.rewrites.prune import METHODS, PrunePass, PruneConfig, nm_mask, parse_pair, \
    prune_config_from_options

__all__ = ["METHODS", "PruneConfig", "PrunePass", "nm_mask", "parse_pair", "prune_config_from_options"]
