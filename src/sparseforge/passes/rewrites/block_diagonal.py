"""Block-diagonal weights (up to permutation) become grouped products; exact up to summation order.

:class:`BlockDiagonalPass` rewrites ``MatMul(x, B)`` and ``Gemm(x, B, C)`` (``transA=0``, unit ``alpha``/``beta``)
whose weight splits into independent blocks (:func:`sparseforge.ir.forms.block_diagonal.find_blocks`): per block
``b``, ``y_b = Gather(x, C_b, axis=-1) @ W_b.T``; the block outputs are concatenated (with zeros for the outputs no
block writes) and put back in output order by one ``Gather`` (left out when the order is already the identity);
a Gemm's ``C`` is added at the end. Only standard ops: ONNX Runtime and every target run the result as it is.
The last node takes the layer's name and output; the others are ``<name>/block<b>``, ``<name>/concat``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.forms import block_diagonal
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.rewrites.candidates import plain_gemm, structured_candidate


class BlockDiagonalPass(ReportingPass):
    """Rewrite MatMul/Gemm layers whose weight is block-diagonal up to permutation into grouped products."""

    name = "BlockDiagonal"

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            view = structured_candidate(node)
            if view is None:
                continue
            x = node.inputs[0]
            if x.shape is None or not x.shape.is_static():
                continue
            if node.op_type == "Gemm" and not plain_gemm(node):
                continue
            matrix = view.matrix()
            blocks, why = block_diagonal.find_blocks(matrix)
            if blocks is None:
                if np.count_nonzero(matrix) < matrix.size:  # only sparse weights are worth a note
                    report.note("block-diagonal.not-rewritten", why, node.name)
                continue
            _rewrite(model, node, matrix, blocks)
            report.changed("grouped", f"{why}: {blocks.count} products (exact)", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)


def _node(model: ir.Model, op: str, inputs, name: str, shape, dtype, **attrs) -> ir.Node:
    node = ir.Node("", op, inputs, attributes=[ir.AttrInt64(k, v) for k, v in attrs.items()], name=name)
    out = node.outputs[0]
    out.name, out.shape, out.type = f"{name}_out", ir.Shape(list(shape)), ir.TensorType(dtype)
    return node


def _rewrite(model: ir.Model, node: ir.Node, matrix: np.ndarray, blocks: block_diagonal.Blocks) -> None:
    base = node.name or "layer"
    x, old = node.inputs[0], node.outputs[0]
    lead = [int(d) for d in x.shape][:-1]
    dtype = x.dtype
    new_nodes: list[ir.Node] = []
    parts = []
    for b, (rows, cols, w) in enumerate(zip(blocks.rows, blocks.cols, blocks.weights(matrix))):
        index = new_initializer(model, f"{base}.block{b}_columns", cols.astype(np.int64))
        gather = _node(model, "Gather", [x, index], f"{base}/block{b}_in", [*lead, cols.size], dtype, axis=-1)
        weight = new_initializer(model, f"{base}.block{b}_weight", np.ascontiguousarray(w.T))
        product = _node(model, "MatMul", [gather.outputs[0], weight], f"{base}/block{b}", [*lead, rows.size], dtype)
        new_nodes += [gather, product]
        parts.append(product.outputs[0])
    order = np.concatenate([*blocks.rows, blocks.zero_rows])
    if blocks.zero_rows.size:
        zeros = np.zeros([*lead, blocks.zero_rows.size], dtype=matrix.dtype)
        parts.append(new_initializer(model, f"{base}.zero_outputs", zeros))
    n = matrix.shape[0]
    result = parts[0]
    if len(parts) > 1:
        concat = _node(model, "Concat", parts, f"{base}/concat", [*lead, n], dtype, axis=-1)
        new_nodes.append(concat)
        result = concat.outputs[0]
    if not np.array_equal(order, np.arange(n)):
        inverse = np.empty(n, np.int64)
        inverse[order] = np.arange(n)
        index = new_initializer(model, f"{base}.output_order", inverse)
        unpermute = _node(model, "Gather", [result, index], f"{base}/order", [*lead, n], dtype, axis=-1)
        new_nodes.append(unpermute)
        result = unpermute.outputs[0]
    if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
        add = _node(model, "Add", [result, node.inputs[2]], f"{base}/bias", [*lead, n], dtype)
        new_nodes.append(add)
        result = add.outputs[0]
    last = new_nodes[-1]
    for new in new_nodes:
        model.graph.insert_before(node, new)
    name, shape, type_ = old.name, old.shape, old.type
    old.replace_all_uses_with(result, replace_graph_outputs=True)
    model.graph.remove(node, safe=True)
    result.name, result.shape, result.type = name, shape, type_
    last.name = base
