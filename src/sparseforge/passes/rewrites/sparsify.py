"""Rewrite layers decided sparse (:mod:`sparseforge.passes.decide`) to ``ai.sparseforge`` ops.

:class:`SparsifyPass` replaces each layer decided sparse by the matching ``ai.sparseforge`` op, the weight encoded
by its structure form (:mod:`sparseforge.ir.forms`), absorbing the layer's bias (also a following bias ``Add``),
and registers the ops' ONNX functions (:mod:`sparseforge.ir.ops`) so the model still runs in ONNX Runtime.
Rewrites are exact.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir import forms, keys, ops
from sparseforge.ir.weights import constant_array
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.decide import META_DECISION, Candidate, Decision, candidate, why_not
from sparseforge.passes.infra import PassReport, ReportingPass


class SparsifyPass(ReportingPass):
    """Replace layers decided sparse (``node.meta[META_DECISION]``) by ``ai.sparseforge`` ops."""

    name = "Sparsify"
    prerequisites = ("DecideFormat",)

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            decision: Decision | None = node.meta.get(META_DECISION)
            if decision is None or decision.fmt == "dense":
                continue
            cand = candidate(node)
            if cand is None:
                report.warn("skip.not-candidate", f"decided {decision.label} but {why_not(node)}", node.name)
                continue
            self._rewrite(model, node, cand, decision, report)
        ops.ensure_functions(model)
        ir.passes.common.RemoveUnusedNodesPass()(model)

    def _rewrite(self, model: ir.Model, node: ir.Node, cand: Candidate, decision: Decision,
                 report: PassReport) -> None:
        view = cand.view
        matrix = view.matrix()
        encoded = forms.encode(np.ascontiguousarray(matrix), decision.fmt, block=decision.block or (4, 1),
                               nm=decision.nm or (2, 4))
        n_out = matrix.shape[0]
        bias = view.bias_array()
        extra_add = None
        if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None and bias is None:
            extra_add = node.inputs[2]  # a C that is not per output channel stays a separate Add
        absorbed_add = None
        if bias is None and extra_add is None:
            absorbed_add, bias = _following_bias_add(node, n_out)
        if bias is None:
            bias = np.zeros(n_out, matrix.dtype)
        base = node.name or view.weight.name or "sparse"
        inputs = [node.inputs[0],
                  new_initializer(model, f"{base}.values", encoded.values),
                  new_initializer(model, f"{base}.indices", encoded.indices),
                  new_initializer(model, f"{base}.dims", encoded.dims),
                  new_initializer(model, f"{base}.bias", bias.astype(matrix.dtype))]
        attributes = ops.attributes(encoded) + (cand.conv.attributes() if cand.kind == "conv" else [])
        new = ir.Node(keys.DOMAIN, ops.op_type(decision.fmt, cand.kind), inputs, attributes,
                      name=node.name, metadata_props=dict(node.metadata_props))
        new.meta[META_DECISION] = decision
        out = new.outputs[0]
        old_out = node.outputs[0]
        out.name, out.shape, out.type = old_out.name, old_out.shape, old_out.type
        model.graph.insert_before(node, new)
        result = out
        if extra_add is not None:
            add = ir.Node("", "Add", [out, extra_add], name=f"{base}_c")
            add.outputs[0].shape, add.outputs[0].type = old_out.shape, old_out.type
            model.graph.insert_after(new, add)
            out.name = f"{old_out.name}_nobias"
            result = add.outputs[0]
            result.name = old_out.name
        if absorbed_add is not None:  # the bias Add after a MatMul now lives in the sparse op
            add_out = absorbed_add.outputs[0]
            out.name, out.shape, out.type = add_out.name, add_out.shape, add_out.type
            add_out.replace_all_uses_with(out, replace_graph_outputs=True)
            model.graph.remove(absorbed_add, safe=True)
        else:
            old_out.replace_all_uses_with(result, replace_graph_outputs=True)
        model.graph.remove(node, safe=True)
        self.stamp(new, f"{decision.label}: {decision.reason}")
        report.changed(f"rewrite.{decision.fmt}", f"{node.op_type} -> {new.op_type} ({decision.label}, "
                       f"{encoded.values.size} stored values for {matrix.size} weights)", new.name)


def _following_bias_add(node: ir.Node, n_out: int) -> tuple[ir.Node | None, np.ndarray | None]:
    """A single-consumer ``Add(y, b)`` with a constant per-output-channel ``b`` right after ``node``."""
    out = node.outputs[0]
    uses = list(out.uses())
    if len(uses) != 1 or out.is_graph_output():
        return None, None
    user, index = uses[0]
    if user.op_type != "Add" or user.domain not in ("", "ai.onnx"):
        return None, None
    other = constant_array(user.inputs[1 - index])
    if other is None or other.size != n_out or other.shape[-1] != n_out:
        return None, None
    y_rank = len(out.shape) if out.shape is not None else 0
    if other.ndim > y_rank:
        return None, None
    return user, other.reshape(-1).astype(np.float32)


def dense_weight(node: ir.Node) -> np.ndarray:
    """The dense ``[N, K]`` weight of an ``ai.sparseforge`` node (decompressed)."""
    fmt, _ = ops.op_format(node.op_type)
    values, indices, dims = (constant_array(node.inputs[i]) for i in (1, 2, 3))
    return forms.decode(values, indices, dims, fmt)
