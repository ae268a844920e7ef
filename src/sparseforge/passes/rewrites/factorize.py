"""Low-rank factorization of weights (exact at fp32 tolerance): one MatMul/Gemm becomes two thin ones.

:class:`LowRankPass` factors every ``MatMul(x, B)`` and ``Gemm(x, B, C)`` (``transA=0``, unit ``alpha``/``beta``,
either ``transB``) whose weight has numerical rank ``r`` with ``r * (N + K) <= N * K / 2``
(:func:`sparseforge.ir.forms.low_rank.break_even_rank`): ``y = x @ W.T (+ C)`` becomes
``y = (x @ V.T) @ U.T (+ C)`` with ``W = U @ V`` (:func:`sparseforge.ir.forms.low_rank.factor`, which refuses
weights that are only approximately low rank). An ungrouped ``Conv`` whose ``[O, C*k]`` matrix has such a rank
becomes ``Conv(x, V [r, C, k...])`` (the layer's strides, pads and dilations) then the 1x1 ``Conv(., U, b)``.
Both factors are standard MatMul/Gemm/Conv operands, so the result runs
in ONNX Runtime and compiles for every target with the dense kernels. The second node keeps the layer's name;
the first is ``<name>/low_rank``. Weights read by other nodes too, weights under :data:`~.candidates.MIN_ELEMENTS` and the
constant-left ``W @ x`` form are left alone; every weight considered gets a note with what was found.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.forms import low_rank
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.rewrites.candidates import conv_candidate, plain_gemm, shared_weight, structured_candidate
from sparseforge.passes.rewrites.structured_cost import Product, choose, cost_note, rows

#: Ranks above this are not tested (the refutation SVD grows with the cube of the rank tested).
MAX_TESTED_RANK = 1023


class LowRankPass(ReportingPass):
    """Factor exactly low-rank MatMul/Gemm weights into two thin products."""

    name = "LowRank"

    def __init__(self, cost_model=None):
        """``cost_model``: when given (``compile``), a factored MatMul/Gemm must also be predicted faster than the
        dense layer and its best sparse kernel (:func:`.structured_cost.choose`)."""
        super().__init__()
        self.cost_model = cost_model

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            view = structured_candidate(node) or conv_candidate(node)
            if view is None:
                continue
            if node.op_type == "Gemm" and not plain_gemm(node):
                report.note("low-rank.skip", "Gemm with transA or non-unit alpha/beta", node.name)
                continue
            if shared_weight(node, view):
                report.note("low-rank.skip", f"the weight '{view.weight.name}' is shared with other layers",
                            node.name)
                continue
            n, k = view.shape
            factors, why = low_rank.factor(view.matrix(), min(low_rank.break_even_rank(n, k), MAX_TESTED_RANK))
            report.counts["weights-checked"] += 1
            if factors is None:
                report.note("low-rank.not-factored", why, node.name)
                continue
            choice = None
            if node.op_type == "Conv":
                _rewrite_conv(model, node, view, factors)
            else:
                m, r = rows(node.inputs[0].shape), factors.rank
                choice = choose(self.cost_model, m, view.matrix(), [Product(m, r, k), Product(m, n, r)] if m else [],
                                f"rank {r} factors")
                if not choice.structured:
                    report.note("low-rank.not-chosen", f"{why}; {choice.why}", node.name)
                    continue
                _rewrite(model, node, factors)
            self.stamp(node, f"low rank: {why}")
            report.changed("factored", f"{why}: {n * k} -> {factors.rank * (n + k)} weights, two MatMuls "
                           f"(exact at fp32 tolerance){cost_note(self.cost_model, choice)}", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)


def _rewrite(model: ir.Model, node: ir.Node, factors: low_rank.Factors) -> None:
    """``node`` (``x @ W.T (+ C)``) in place: ``h = x @ V.T`` inserted before it, ``node`` reads ``h`` and
    ``U.T``."""
    base = node.name or "layer"
    first = ir.Node("", "MatMul", [node.inputs[0], new_initializer(model, f"{base}.low_rank_v",
                                                                   np.ascontiguousarray(factors.v.T))],
                    name=f"{base}/low_rank")
    hidden = first.outputs[0]
    hidden.name = f"{node.outputs[0].name or base}_low_rank"
    x = node.inputs[0]
    if x.shape is not None:
        hidden.shape = ir.Shape([*list(x.shape)[:-1], factors.rank])
    hidden.type = x.type
    model.graph.insert_before(node, first)
    node.replace_input_with(0, hidden)
    node.replace_input_with(1, new_initializer(model, f"{base}.low_rank_u", np.ascontiguousarray(factors.u.T)))
    if node.op_type == "Gemm" and "transB" in node.attributes:
        node.attributes.pop("transB")


def _rewrite_conv(model: ir.Model, node: ir.Node, view, factors: low_rank.Factors) -> None:
    """``Conv(x, W, b)`` with ``W [O, C*k] = U V`` in place: ``h = Conv(x, V [r, C, k...])`` (same strides, pads,
    dilations) inserted before it; ``node`` becomes the 1x1 ``Conv(h, U [O, r, 1...], b)``."""
    base = node.name or "conv"
    stored = view.stored()
    spatial = stored.shape[2:]
    first = ir.Node("", "Conv", [node.inputs[0], new_initializer(
        model, f"{base}.low_rank_v", np.ascontiguousarray(factors.v.reshape(factors.rank, *stored.shape[1:])))],
        attributes=[a for key, a in node.attributes.items() if key != "kernel_shape"], name=f"{base}/low_rank")
    hidden = first.outputs[0]
    hidden.name = f"{node.outputs[0].name or base}_low_rank"
    out = node.outputs[0]
    if out.shape is not None:
        hidden.shape = ir.Shape([out.shape[0], factors.rank, *list(out.shape)[2:]])
    hidden.type = node.inputs[0].type
    model.graph.insert_before(node, first)
    node.replace_input_with(0, hidden)
    node.replace_input_with(1, new_initializer(model, f"{base}.low_rank_u", np.ascontiguousarray(
        factors.u.reshape(factors.u.shape[0], factors.rank, *([1] * len(spatial))))))
    for key in ("pads", "strides", "dilations", "kernel_shape", "auto_pad"):
        node.attributes.pop(key, None)
