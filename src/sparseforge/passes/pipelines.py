"""Named pipelines: plain functions returning ordered lists of passes."""

from __future__ import annotations

from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.canonicalize import canonicalize_passes
from sparseforge.passes.decide import DecideFormatPass
from sparseforge.passes.infra import ReportingPass
from sparseforge.passes.rewrites.block_diagonal import BlockDiagonalPass
from sparseforge.passes.rewrites.factorize import LowRankPass
from sparseforge.passes.rewrites.fft_conv import FftConvPass
from sparseforge.passes.rewrites.monarch import MonarchPass
from sparseforge.passes.rewrites.separable import SeparablePass
from sparseforge.passes.rewrites.prune import PruneConfig, PrunePass
from sparseforge.passes.rewrites.shrink_channels import ShrinkChannelsPass
from sparseforge.passes.rewrites.sparse_low_rank import SparseLowRankPass
from sparseforge.passes.rewrites.sparsify import SparsifyPass


def canonicalize() -> list[ReportingPass]:
    """Constant folding, shape inference, BatchNorm folding, Gemm normalization."""
    return canonicalize_passes()


def analysis(*, with_rank: bool = True, max_svd_dim: int = 2048) -> list[ReportingPass]:
    """Canonicalize, then analyse every weight (the model is not changed further)."""
    return [*canonicalize(), StructureAnalysisPass(with_rank=with_rank, max_svd_dim=max_svd_dim)]


def export() -> list[ReportingPass]:
    """Canonicalize, remove dead channels and apply the exact structured rewrites (the ``export`` command)."""
    return [*canonicalize(), ShrinkChannelsPass(), *structured()]


def structured(cost_model=None) -> list[ReportingPass]:
    """The exact structured rewrites: low-rank factorization, block-diagonal weights as grouped products, Monarch
    weights as two block-diagonal batched products, long 1-D convolutions as FFT convolutions, 2-D convolutions
    with rank-1 kernels as a vertical and a horizontal one. With ``cost_model`` (``compile``) the MatMul/Gemm forms
    are kept only where it predicts them faster than dense and the sparse kernels; without (``export``) the
    operation counts decide."""
    return [LowRankPass(cost_model), BlockDiagonalPass(cost_model), MonarchPass(cost_model), FftConvPass(),
            SeparablePass()]


#: The diagnostic code each structured rewrite records for a rewritten layer.
STRUCTURED_CHANGES = {"ShrinkChannels": "heads", "LowRank": "factored", "BlockDiagonal": "grouped",
                      "Monarch": "monarch", "FftConv": "fft", "Separable": "separable",
                      "SparseLowRank": "split"}


def structured_changes(reports) -> list[dict]:
    """``[{pass, node, form, message}]``: every layer the structured rewrites changed (and every attention core
    whose dead heads ShrinkChannels removed), from the pass reports."""
    return [dict(pass_name=r.pass_name, node=d.node, form=d.code, message=d.message)
            for r in reports if r.pass_name in STRUCTURED_CHANGES
            for d in r.diagnostics if d.code == STRUCTURED_CHANGES[r.pass_name]]


def prune(config: PruneConfig) -> list[ReportingPass]:
    """Canonicalize and prune (approximate)."""
    return [*canonicalize(), PrunePass(config)]


def before_decisions() -> list[ReportingPass]:
    """What runs before the per-layer kernel decisions: canonicalize and remove dead channels exactly."""
    return [*canonicalize(), ShrinkChannelsPass()]


def decisions(cost_model, *, dense: bool = False, refine_all: bool = False) -> list[ReportingPass]:
    """Per-layer dense/sparse decisions from ``cost_model``, read from the analysis facts (no rank: the decisions
    do not use it); the model is not changed. ``refine_all``: measure every layer at its shape, not only close
    calls."""
    return [StructureAnalysisPass(with_rank=False), DecideFormatPass(cost_model, dense_only=dense,
                                                                     refine_all=refine_all)]


def compile(cost_model, *, dense: bool = False) -> list[ReportingPass]:  # noqa: A001 - the command's name
    """The ``compile`` command's passes: :func:`before_decisions`, the structured rewrites and the sparse + low-rank
    split where ``cost_model`` says it pays (not with ``dense``: the dense control compiles the weights as they
    are), the decisions, the sparse rewrites."""
    forms = [] if dense else [*structured(cost_model), SparseLowRankPass(cost_model)]
    return [*before_decisions(), *forms, *decisions(cost_model, dense=dense), SparsifyPass()]
