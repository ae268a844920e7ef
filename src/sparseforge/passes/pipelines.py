"""Named pipelines: plain functions returning ordered lists of passes."""

from __future__ import annotations

from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.canonicalize import canonicalize_passes
from sparseforge.passes.infra import ReportingPass
from sparseforge.passes.prune import PruneConfig, PrunePass
from sparseforge.passes.shrink_channels import ShrinkChannelsPass


def canonicalize() -> list[ReportingPass]:
    """Constant folding, shape inference, BatchNorm folding, Gemm normalization."""
    return canonicalize_passes()


def analysis(*, with_rank: bool = True, max_svd_dim: int = 2048) -> list[ReportingPass]:
    """Canonicalize, then analyse every weight (the model is not changed further)."""
    return [*canonicalize(), StructureAnalysisPass(with_rank=with_rank, max_svd_dim=max_svd_dim)]


def export() -> list[ReportingPass]:
    """Canonicalize and remove dead channels exactly (the ``export`` command)."""
    return [*canonicalize(), ShrinkChannelsPass()]


def prune(config: PruneConfig) -> list[ReportingPass]:
    """Canonicalize and prune (approximate)."""
    return [*canonicalize(), PrunePass(config)]
