"""StructureAnalysis: run every registered fact on every constant weight; the model is not changed.

Per weight-bearing node (see :func:`sparseforge.ir.weights.weight_views`; quantized layers, MatMulInteger/ConvInteger/
QLinearMatMul/QLinearConv, on their integer values minus the zero point) the pass stores
``node.meta[keys.META_FACTS]`` (``{fact name: value}``, for later passes) and the JSON-ready
:class:`WeightStructure` in ``node.meta`` and ``weight.meta`` under ``keys.META_STRUCTURE``, and lists every
layer's fields in ``report.details["layers"]``. A weight shared by several nodes of the same op type and layout is
analysed once.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import onnx_ir as ir

from sparseforge.ir import keys
from sparseforge.ir.weights import QuantizedWeightView, WeightView, quantized_views, weight_views
from sparseforge.passes.channels import heads
from sparseforge.passes.analysis import FACTS, AnalysisOptions, WeightStructure, get
from sparseforge.passes.analysis.channels import DeadChannels
from sparseforge.passes.analysis.rank import RankInfo
from sparseforge.passes.infra import PassReport, ReportingPass


def analyse(view: WeightView, options: AnalysisOptions) -> tuple[dict[str, Any], WeightStructure]:
    """Every registered fact of ``view``: ``({fact name: value}, WeightStructure)``."""
    mat = view.matrix()
    facts = {fact.name: fact.compute(view, mat, options) for fact in FACTS}
    fields: dict[str, Any] = {}
    for fact in FACTS:
        fields.update(fact.to_fields(facts[fact.name]))
    structure = WeightStructure(
        node=view.name,
        op_type=view.op_type,
        weight=view.weight.name or "",
        shape=(int(mat.shape[0]), int(mat.shape[1])),
        stored_shape=tuple(int(d) for d in view.stored().shape),
        groups=view.groups,
        kernel_shape=view.kernel_shape,
        **fields,
    )
    return facts, structure


def facts_for(view: WeightView, names: tuple[str, ...], matrix=None) -> dict[str, Any]:
    """The registered facts ``names`` of one weight (cheap facts only: rank needs :class:`AnalysisOptions`)."""
    mat = view.matrix() if matrix is None else matrix
    options = AnalysisOptions(with_rank=False)
    return {name: get(name).compute(view, mat, options) for name in names}


def analyse_view(view: WeightView, *, with_rank: bool = True, max_svd_dim: int = 2048) -> WeightStructure:
    """Compute the :class:`WeightStructure` of one weight-bearing node."""
    return analyse(view, AnalysisOptions(with_rank=with_rank, max_svd_dim=max_svd_dim))[1]


class StructureAnalysisPass(ReportingPass):
    """Analyse every constant weight; results in ``node.meta`` / ``value.meta`` and ``report.details["layers"]``."""

    name = "StructureAnalysis"
    provides = tuple(fact.name for fact in FACTS)

    def __init__(self, *, with_rank: bool = True, max_svd_dim: int = 2048):
        super().__init__()
        self.with_rank = with_rank
        self.max_svd_dim = max_svd_dim

    def run(self, model: ir.Model, report: PassReport) -> None:
        options = AnalysisOptions(with_rank=self.with_rank, max_svd_dim=self.max_svd_dim)
        layers: list[dict[str, Any]] = []
        cache: dict[tuple[int, int], tuple[dict[str, Any], WeightStructure]] = {}
        for view in itertools.chain(weight_views(model.graph), quantized_views(model.graph)):
            key = (id(view.weight), view.out_axis)
            cached = cache.get(key)
            if cached is None or cached[1].op_type != view.op_type:
                facts, structure = cache[key] = analyse(view, options)
            else:
                facts, structure = cached[0], dataclasses.replace(cached[1], node=view.name)
            view.weight.meta[keys.META_STRUCTURE] = structure
            view.node.meta[keys.META_STRUCTURE] = structure
            view.node.meta[keys.META_FACTS] = dict(facts)
            layers.append(structure.to_dict())
            self._summarise(view, facts, report)
        report.details["layers"] = layers
        report.details["attention"] = attention = heads.summary(model)
        for core in attention:
            if core["dead"]:
                report.note("found.dead-heads", f"{len(core['dead'])} of {core['heads']} heads contribute nothing "
                            f"(heads {core['dead']}: zero value rows or output columns): export removes them",
                            core["node"])
            if core["zero_q"] or core["zero_k"]:
                report.note("found.uniform-heads", f"heads {sorted(set(core['zero_q'] + core['zero_k']))} have zero "
                            "Q or K weights: their softmax is uniform, they still average V (not removable)",
                            core["node"])

    def _summarise(self, view: WeightView, facts: dict[str, Any], report: PassReport) -> None:
        channels: DeadChannels = facts["channels"]
        rank: RankInfo = facts["rank"]
        report.counts["weights"] += 1
        if isinstance(view, QuantizedWeightView):
            report.counts["quantized-weights"] += 1
            report.note("found.quantized", f"{view.op_type}: {view.stored().dtype} weight analysed on its integer "
                        "values (a value equal to the zero point is a zero); compiled dense, as written", view.name)
        if channels.outputs:
            report.counts["layers-with-dead-outputs"] += 1
        if facts["long_conv"]:
            report.note("found.long-conv", f"1-D conv with {view.kernel_shape[0]} taps: an FFT "
                        "convolution candidate", view.name)
        if rank.rank is None and self.with_rank:
            report.note("rank.bounded", rank.method, view.name)


def structure_of(view: WeightView) -> WeightStructure | None:
    """The analysis result attached to ``view``'s node, if the pass ran."""
    return view.node.meta.get(keys.META_STRUCTURE)


def facts_of(node: ir.Node) -> dict[str, Any]:
    """``{fact name: value}`` stored on ``node`` by :class:`StructureAnalysisPass` (empty if it did not run)."""
    return node.meta.get(keys.META_FACTS, {})
