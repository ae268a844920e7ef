"""Pipelines check that every pass's prerequisites (passes or analysis facts) run before it."""

from __future__ import annotations

import onnx_ir as ir
import pytest
from helpers import make_model, to_ir, vinfo
from onnx import helper

from sparseforge.passes import pipelines
from sparseforge.passes.analysis.analyse import StructureAnalysisPass
from sparseforge.passes.canonicalize import NormalizeGemmPass
from sparseforge.passes.infra import PassReport, Pipeline, PipelineError, PipelineOrderError, ReportingPass


class NeedsRank(ReportingPass):
    name = "NeedsRank"
    prerequisites = ("rank", "NormalizeGemm")

    def run(self, model: ir.Model, report: PassReport) -> None:
        report.counts["ran"] += 1


def _model() -> ir.Model:
    node = helper.make_node("Relu", ["x"], ["y"], name="r")
    return to_ir(make_model([node], [vinfo("x", [2])], [vinfo("y", [2])]))


def test_unmet_prerequisite_fails_when_the_pipeline_is_built() -> None:
    with pytest.raises(PipelineOrderError, match=r"pass NeedsRank requires rank, NormalizeGemm, which no earlier "
                                                 r"pass provides \(passes before it: none\)") as info:
        Pipeline([NeedsRank(), StructureAnalysisPass(), NormalizeGemmPass()])
    assert isinstance(info.value, PipelineError)
    with pytest.raises(PipelineOrderError, match=r"requires NormalizeGemm, .*before it: StructureAnalysis\)"):
        Pipeline([StructureAnalysisPass(), NeedsRank()])


def test_prerequisites_met_by_earlier_passes_and_their_facts() -> None:
    result = Pipeline([NormalizeGemmPass(), StructureAnalysisPass(), NeedsRank()])(_model())
    assert result.report("NeedsRank").counts["ran"] == 1


def test_named_pipelines_are_well_formed() -> None:
    for passes in (pipelines.analysis(), pipelines.export(), pipelines.canonicalize()):
        Pipeline(passes)
