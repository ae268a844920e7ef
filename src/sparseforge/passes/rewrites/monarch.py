"""Monarch weights become two block-diagonal batched products with a permutation between them; exact up to
summation order.

:class:`MonarchPass` rewrites ``MatMul(x, B)`` and ``Gemm(x, B, C)`` (``transA=0``, unit ``alpha``/``beta``)
whose weight is exactly a Monarch product (:func:`sparseforge.ir.forms.monarch.find`) with static ``x``:

    x[..., K] -> Reshape [P, A, C] -> Transpose [A, P, C] -> MatMul R^T [A, C, F] -> [A, P, F]
              -> Transpose [F, P, A] -> MatMul L^T [F, A, G] -> [F, P, G]
              -> Transpose [P, G, F] (order "gf") or [P, F, G] (order "fg") -> Reshape [..., N] (-> Add C)

Only standard ops: ONNX Runtime and every target run the result as it is. The last node takes the layer's name
and output; the others are ``<name>/monarch_<step>``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.forms import monarch
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.rewrites.candidates import replace_layer, shared_weight, static_matmul_candidate
from sparseforge.passes.rewrites.structured_cost import Product, choose, cost_note as _cost_note, rows


class MonarchPass(ReportingPass):
    """Rewrite MatMul/Gemm layers whose weight is exactly a Monarch product into two batched products."""

    name = "Monarch"

    def __init__(self, cost_model=None):
        """``cost_model``: when given (``compile``), the two batched products must also be predicted faster than
        the dense layer and its best sparse kernel (:func:`.structured_cost.choose`)."""
        super().__init__()
        self.cost_model = cost_model

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            view = static_matmul_candidate(node)
            if view is None:
                continue
            if shared_weight(node, view):
                continue
            matrix = view.matrix()
            if np.count_nonzero(matrix) < matrix.size // 2:  # sparse weights: the sparse and grouped forms
                continue
            found, why = monarch.find(matrix)
            report.counts["weights-checked"] += 1
            if found is None:
                report.note("monarch.not-rewritten", why, node.name)
                continue
            p = rows(node.inputs[0].shape)
            (a, f, c), g = found.r.shape, found.l.shape[1]
            choice = choose(self.cost_model, p, matrix, [Product(p, f, c, batch=a), Product(p, g, a, batch=f)],
                            f"Monarch {a}x{f}")
            if not choice.structured:
                report.note("monarch.not-chosen", f"{why}; {choice.why}", node.name)
                continue
            _rewrite(model, node, found)
            n, k = matrix.shape
            report.changed("monarch", f"{why}: {n * k} -> {found.stored} weights, two batched MatMuls "
                           f"(exact at fp32 tolerance){_cost_note(self.cost_model, choice)}", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)


def _node(op: str, inputs, name: str, shape, dtype, **attrs) -> ir.Node:
    attributes = [ir.AttrInt64s(k, v) if isinstance(v, (list, tuple)) else ir.AttrInt64(k, v)
                  for k, v in attrs.items()]
    node = ir.Node("", op, inputs, attributes=attributes, name=name)
    out = node.outputs[0]
    out.name, out.shape, out.type = f"{name}_out", ir.Shape(list(shape)), ir.TensorType(dtype)
    return node


def _rewrite(model: ir.Model, node: ir.Node, found: monarch.Monarch) -> None:
    base = node.name or "layer"
    x = node.inputs[0]
    lead = [int(d) for d in x.shape][:-1]
    p = int(np.prod(lead, dtype=np.int64))
    a, f, c = found.r.shape
    g = found.l.shape[1]
    dtype = x.dtype

    def shape_of(name: str, dims) -> ir.Value:
        return new_initializer(model, f"{base}.monarch_{name}_shape", np.asarray(dims, np.int64))

    r_t = new_initializer(model, f"{base}.monarch_r", np.ascontiguousarray(found.r.transpose(0, 2, 1)))  # [A, C, F]
    l_t = new_initializer(model, f"{base}.monarch_l", np.ascontiguousarray(found.l.transpose(0, 2, 1)))  # [F, A, G]
    steps = [_node("Reshape", [x, shape_of("in", [p, a, c])], f"{base}/monarch_in", [p, a, c], dtype)]
    steps.append(_node("Transpose", [steps[-1].outputs[0]], f"{base}/monarch_split", [a, p, c], dtype,
                       perm=[1, 0, 2]))
    steps.append(_node("MatMul", [steps[-1].outputs[0], r_t], f"{base}/monarch_r", [a, p, f], dtype))
    steps.append(_node("Transpose", [steps[-1].outputs[0]], f"{base}/monarch_permute", [f, p, a], dtype,
                       perm=[2, 1, 0]))
    steps.append(_node("MatMul", [steps[-1].outputs[0], l_t], f"{base}/monarch_l", [f, p, g], dtype))
    perm, dims = ([1, 2, 0], [p, g, f]) if found.order == "gf" else ([1, 0, 2], [p, f, g])
    steps.append(_node("Transpose", [steps[-1].outputs[0]], f"{base}/monarch_merge", dims, dtype, perm=perm))
    n = f * g
    steps.append(_node("Reshape", [steps[-1].outputs[0], shape_of("out", [*lead, n])], f"{base}/monarch_out",
                       [*lead, n], dtype))
    if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
        steps.append(_node("Add", [steps[-1].outputs[0], node.inputs[2]], f"{base}/monarch_bias", [*lead, n], dtype))
    replace_layer(model, node, steps)
