"""Sparse + low-rank weights become a thin product pair plus a sparse product; exact at fp32 tolerance.

:class:`SparseLowRankPass` splits the weight of ``MatMul(x, B)`` and ``Gemm(x, B, C)`` (``transA=0``, unit
``alpha``/``beta``, either ``transB``, static activation shape) that is exactly ``W = U V + S``
(:func:`sparseforge.ir.forms.sparse_low_rank.decompose`): ``y = (x @ V.T) @ U.T + x @ S.T (+ C)``. It runs in
``compile`` only, before the per-layer decisions, and only where the cost model predicts the two thin products
plus the best sparse kernel for ``S`` at least ``min_speedup`` faster than the dense layer: the decisions then
give ``S``'s product that sparse kernel. (``export`` does not split: ONNX Runtime runs ``S`` dense, slower than
``W``.) Nodes: ``<name>/low_rank`` (``x @ V.T``), ``<name>/low_rank_out`` (``@ U.T``), ``<name>/sparse``
(``x @ S.T``, with ``C``), and the ``Add`` that takes the layer's name and output. Weights shared with other
nodes, sparse weights (density <= :data:`~sparseforge.ir.forms.sparse_low_rank.MAX_DENSITY`: the sparse kernels
take them as they are) and dense-but-unsplittable weights are left alone, with a note.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir import forms
from sparseforge.ir.forms import low_rank, sparse_low_rank
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.rewrites.candidates import replace_layer, shared_weight, static_matmul_candidate


class SparseLowRankPass(ReportingPass):
    """Split MatMul/Gemm weights that are exactly low rank plus sparse, where the cost model says it pays."""

    name = "SparseLowRank"

    def __init__(self, cost_model, *, min_speedup: float = 1.1):
        super().__init__()
        self.cost_model = cost_model
        self.min_speedup = min_speedup

    def run(self, model: ir.Model, report: PassReport) -> None:
        if self.cost_model is None:
            report.note("sparse-low-rank.skip", "no cost model for this target: sparse + low rank not considered")
            return
        for node in list(model.graph):
            view = static_matmul_candidate(node)
            if view is None:
                continue
            if shared_weight(node, view):
                continue
            matrix = view.matrix()
            if np.count_nonzero(matrix) <= sparse_low_rank.MAX_DENSITY * matrix.size:
                continue  # sparse already: the decisions give it a sparse kernel
            n, k = view.shape
            parts, why = sparse_low_rank.decompose(matrix, low_rank.break_even_rank(n, k))
            report.counts["weights-checked"] += 1
            if parts is None:
                report.note("sparse-low-rank.not-split", why, node.name)
                continue
            m = int(np.prod([int(d) for d in node.inputs[0].shape][:-1]))
            predicted = self._predict(m, n, k, parts)
            if predicted is None:
                report.note("sparse-low-rank.not-split", f"{why}; no timing data to compare it with dense",
                            node.name)
                continue
            split_s, dense_s, label = predicted
            if split_s * self.min_speedup > dense_s:
                report.note("sparse-low-rank.not-split", f"{why}; predicted {self._show(split_s)} (rank "
                            f"{parts.rank} products + {label}) vs dense {self._show(dense_s)}: not faster",
                            node.name)
                continue
            for new in rewrite(model, node, parts):
                self.stamp(new, f"sparse + low rank: {why}")
            report.changed("split", f"{why}: predicted {dense_s / split_s:.1f}x over dense (rank {parts.rank} "
                           f"products + {label} for the residual; exact at fp32 tolerance)", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)

    def _show(self, t: float) -> str:
        return f"{t:.3g} (relative)" if getattr(self.cost_model, "unit", "s") == "relative" else f"{t * 1e3:.3f} ms"

    def _predict(self, m: int, n: int, k: int, parts: sparse_low_rank.SparseLowRank
                 ) -> tuple[float, float, str] | None:
        """``(split, dense, sparse kernel label)`` predicted times, or None without data."""
        model, r = self.cost_model, parts.rank
        dense = model.predict("dense", m, n, k)
        thin = [model.predict("dense", m, r, k), model.predict("dense", m, n, r)]
        if dense is None or any(t is None for t in thin):
            return None
        density = parts.density
        best = None
        for option in forms.options(parts.s):
            t = model.predict(option.form, m, n, k, density=density, **option.predict_kwargs())
            if t is not None and (best is None or t < best[0]):
                best = (t, option.label)
        if best is None:
            return None
        return sum(thin) + best[0], dense, best[1]


def rewrite(model: ir.Model, node: ir.Node, parts: sparse_low_rank.SparseLowRank) -> list[ir.Node]:
    """``node`` (``x @ W.T (+ C)``) becomes ``Add((x @ V.T) @ U.T, x @ S.T (+ C))``; returns the new nodes."""
    base = node.name or "layer"
    x = node.inputs[0]
    bias = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None

    def init(suffix: str, array: np.ndarray) -> ir.Value:
        return new_initializer(model, f"{base}.{suffix}", np.ascontiguousarray(array))

    first = ir.Node("", "MatMul", [x, init("low_rank_v", parts.v.T)], name=f"{base}/low_rank")
    second = ir.Node("", "MatMul", [first.outputs[0], init("low_rank_u", parts.u.T)], name=f"{base}/low_rank_out")
    if bias is not None:
        residual = ir.Node("", "Gemm", [x, init("sparse_residual", parts.s.T), bias], name=f"{base}/sparse")
    else:
        residual = ir.Node("", "MatMul", [x, init("sparse_residual", parts.s.T)], name=f"{base}/sparse")
    total = ir.Node("", "Add", [second.outputs[0], residual.outputs[0]])
    out = node.outputs[0]
    for new, width in ((first, parts.rank), (second, None), (residual, None)):
        value = new.outputs[0]
        value.name = f"{out.name or base}_{new.name.rsplit('/', 1)[-1]}"
        value.type = x.type
        if width is not None and x.shape is not None:
            value.shape = ir.Shape([*list(x.shape)[:-1], width])
        elif out.shape is not None:
            value.shape = out.shape
    replace_layer(model, node, [first, second, residual, total])
    return [first, second, residual, total]
