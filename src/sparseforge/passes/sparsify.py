"""Compatibility re-exports: the decision pass lives in :mod:`sparseforge.passes.decide`, the rewrite in
:mod:`sparseforge.passes.rewrites.sparsify`. Import from there."""

from sparseforge.passes.decide import (BSR_BLOCKS, MAX_STORED_FRACTION, META_DECISION, NM_PATTERNS,  # noqa: F401
                                       PROV_DECISION, Candidate, CostModel, Decision, DecideFormatPass, candidate,
                                       why_not)
from sparseforge.passes.rewrites.sparsify import SparsifyPass, dense_weight  # noqa: F401
