"""Block-diagonal weights (up to permutation) become grouped products; exact up to summation order.

:class:`BlockDiagonalPass` rewrites ``MatMul(x, B)`` and ``Gemm(x, B, C)`` (``transA=0``, unit ``alpha``/``beta``)
whose weight splits into independent blocks (:func:`sparseforge.ir.forms.block_diagonal.find_blocks`): equal
blocks writing every output run as one batched product (the columns gathered in block order, reshaped to
``[g, P, kb]``, one ``MatMul`` with ``[g, kb, nb]``, reshaped back); otherwise per block
``b``, ``y_b = Gather(x, C_b, axis=-1) @ W_b.T`` and the block outputs are concatenated (with zeros for the outputs no
block writes) and put back in output order by one ``Gather`` (left out when the order is already the identity);
a Gemm's ``C`` is added at the end. An ungrouped ``Conv`` whose channel-level pattern (``W[o, c]`` nonzero anywhere
in the kernel) splits into blocks recovers the grouped Conv: input channels gathered in block order, one
``Conv(group=g)`` when the blocks are equal and every output is written (else a Conv per block and a Concat),
outputs put back in order. Only standard ops: ONNX Runtime and every target run the result as it is.
The last node takes the layer's name and output; the others are ``<name>/block<b>``, ``<name>/concat``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.forms import block_diagonal
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.rewrites.candidates import (conv_candidate, replace_layer, shared_weight,
                                                     static_matmul_candidate)
from sparseforge.passes.rewrites.structured_cost import Product, choose, cost_note as _cost_note, rows


#: Equal blocks run as one batched product (else one product per block).
BATCHED = True


class BlockDiagonalPass(ReportingPass):
    """Rewrite MatMul/Gemm layers whose weight is block-diagonal up to permutation into grouped products."""

    name = "BlockDiagonal"

    def __init__(self, cost_model=None):
        """``cost_model``: when given (``compile``), the grouped MatMul/Gemm products must also be predicted faster
        than the dense layer and its best sparse kernel (:func:`.structured_cost.choose`)."""
        super().__init__()
        self.cost_model = cost_model

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            conv = conv_candidate(node)
            if conv is not None:
                self._conv(model, node, conv, report)
                continue
            view = static_matmul_candidate(node)
            if view is None:
                continue
            matrix = view.matrix()
            blocks, why = block_diagonal.find_blocks(matrix)
            if blocks is None:
                if np.count_nonzero(matrix) < matrix.size:  # only sparse weights are worth a note
                    report.note("block-diagonal.not-rewritten", why, node.name)
                continue
            m = rows(node.inputs[0].shape)
            choice = choose(self.cost_model, m, matrix,
                            [Product(m, r.size, c.size) for r, c in zip(blocks.rows, blocks.cols)],
                            f"{blocks.count} grouped products")
            if not choice.structured:
                report.note("block-diagonal.not-chosen", f"{why}; {choice.why}", node.name)
                continue
            _rewrite(model, node, matrix, blocks)
            report.changed("grouped", f"{why}: {blocks.count} products (exact)"
                           f"{_cost_note(self.cost_model, choice)}", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)

    def _conv(self, model: ir.Model, node: ir.Node, view, report: PassReport) -> None:
        """An ungrouped Conv whose channel-level nonzero pattern splits into blocks: one grouped Conv between two
        channel Gathers when the blocks are equal and every output is written, else a Conv per block."""
        stored = view.stored()
        pattern = np.abs(stored.reshape(stored.shape[0], stored.shape[1], -1)).sum(axis=2)
        if np.count_nonzero(pattern) == pattern.size:
            return
        blocks, why = block_diagonal.find_blocks(pattern)
        if blocks is None:
            report.note("block-diagonal.not-rewritten", why, node.name)
            return
        x = node.inputs[0]
        if x.shape is None or not x.shape.is_static() or node.outputs[0].shape is None \
                or not node.outputs[0].shape.is_static():
            report.note("block-diagonal.not-rewritten", f"{why}, but the Conv's shapes are not static", node.name)
            return
        if shared_weight(node, view):
            return
        equal = len({(r.size, c.size) for r, c in zip(blocks.rows, blocks.cols)}) == 1 and not blocks.zero_rows.size
        _rewrite_conv(model, node, view, blocks, grouped=equal)
        shape = "one grouped Conv (group=" + str(blocks.count) + ")" if equal else f"{blocks.count} Convs"
        report.changed("grouped", f"{why} (channel pattern): {shape} (exact)", node.name)


def _conv_attrs(node: ir.Node, group: int) -> list[ir.Attr]:
    attrs = [a for key, a in node.attributes.items() if key != "group"]
    return [*attrs, ir.AttrInt64("group", group)]


def _rewrite_conv(model: ir.Model, node: ir.Node, view, blocks: block_diagonal.Blocks, *, grouped: bool) -> None:
    base = node.name or "conv"
    x, old = node.inputs[0], node.outputs[0]
    stored = view.stored()
    out_shape = [int(d) for d in old.shape]
    x_shape = [int(d) for d in x.shape]
    bias = view.bias_array()
    dtype = x.dtype
    new_nodes: list[ir.Node] = []
    order = np.concatenate([*blocks.rows, blocks.zero_rows])
    if grouped:
        cols = np.concatenate(blocks.cols)
        index = new_initializer(model, f"{base}.group_columns", cols.astype(np.int64))
        gather = _node(model, "Gather", [x, index], f"{base}/group_in", [x_shape[0], cols.size, *x_shape[2:]], dtype,
                       axis=1)
        weight = np.concatenate([stored[np.ix_(r, c)] for r, c in zip(blocks.rows, blocks.cols)], axis=0)
        inputs = [gather.outputs[0], new_initializer(model, f"{base}.group_weight", np.ascontiguousarray(weight))]
        if bias is not None:
            inputs.append(new_initializer(model, f"{base}.group_bias", bias[np.concatenate(blocks.rows)]))
        conv = ir.Node("", "Conv", inputs, attributes=_conv_attrs(node, blocks.count), name=f"{base}/grouped")
        conv.outputs[0].name, conv.outputs[0].shape = f"{base}/grouped_out", ir.Shape(out_shape)
        conv.outputs[0].type = old.type
        new_nodes += [gather, conv]
        result = conv.outputs[0]
    else:
        parts = []
        for b, (rows, cols) in enumerate(zip(blocks.rows, blocks.cols)):
            index = new_initializer(model, f"{base}.block{b}_columns", cols.astype(np.int64))
            gather = _node(model, "Gather", [x, index], f"{base}/block{b}_in", [x_shape[0], cols.size, *x_shape[2:]],
                           dtype, axis=1)
            inputs = [gather.outputs[0], new_initializer(model, f"{base}.block{b}_weight",
                                                         np.ascontiguousarray(stored[np.ix_(rows, cols)]))]
            if bias is not None:
                inputs.append(new_initializer(model, f"{base}.block{b}_bias", bias[rows]))
            conv = ir.Node("", "Conv", inputs, attributes=_conv_attrs(node, 1), name=f"{base}/block{b}")
            conv.outputs[0].name = f"{base}/block{b}_out"
            conv.outputs[0].shape = ir.Shape([out_shape[0], rows.size, *out_shape[2:]])
            conv.outputs[0].type = old.type
            new_nodes += [gather, conv]
            parts.append(conv.outputs[0])
        if blocks.zero_rows.size:  # outputs no block writes: their bias, everywhere
            fill = np.zeros([out_shape[0], blocks.zero_rows.size, *out_shape[2:]], stored.dtype)
            if bias is not None:
                fill += bias[blocks.zero_rows].reshape([1, -1] + [1] * (len(out_shape) - 2))
            parts.append(new_initializer(model, f"{base}.zero_outputs", fill))
        concat = _node(model, "Concat", parts, f"{base}/concat", out_shape, dtype, axis=1)
        new_nodes.append(concat)
        result = concat.outputs[0]
    if not np.array_equal(order, np.arange(order.size)):
        inverse = np.empty(order.size, np.int64)
        inverse[order] = np.arange(order.size)
        index = new_initializer(model, f"{base}.output_order", inverse)
        unpermute = _node(model, "Gather", [result, index], f"{base}/order", out_shape, dtype, axis=1)
        new_nodes.append(unpermute)
        result = unpermute.outputs[0]
    replace_layer(model, node, new_nodes)


def _node(model: ir.Model, op: str, inputs, name: str, shape, dtype, **attrs) -> ir.Node:
    node = ir.Node("", op, inputs, attributes=[ir.AttrInt64(k, v) for k, v in attrs.items()], name=name)
    out = node.outputs[0]
    out.name, out.shape, out.type = f"{name}_out", ir.Shape(list(shape)), ir.TensorType(dtype)
    return node


def _batched(model: ir.Model, base: str, x: ir.Value, matrix: np.ndarray, blocks: block_diagonal.Blocks
             ) -> tuple[list[ir.Node], ir.Value]:
    """Equal blocks, every output written: one Gather of the columns in block order, Reshape ``[P, g, kb]``,
    Transpose, one batched MatMul ``[g, P, kb] x [g, kb, nb]``, Transpose, Reshape ``[..., g * nb]`` (outputs in
    block order)."""
    lead = [int(d) for d in x.shape][:-1]
    p = int(np.prod(lead, dtype=np.int64))
    g, kb, nb = blocks.count, blocks.cols[0].size, blocks.rows[0].size
    dtype = x.dtype
    nodes: list[ir.Node] = []
    cols = np.concatenate(blocks.cols).astype(np.int64)
    source = x
    if not np.array_equal(cols, np.arange(cols.size)):
        index = new_initializer(model, f"{base}.block_columns", cols)
        nodes.append(_node(model, "Gather", [x, index], f"{base}/blocks_in", [*lead, cols.size], dtype, axis=-1))
        source = nodes[-1].outputs[0]
    shape = new_initializer(model, f"{base}.block_shape", np.array([p, g, kb], np.int64))
    nodes.append(_node(model, "Reshape", [source, shape], f"{base}/blocks_split", [p, g, kb], dtype))
    nodes.append(_node_perm(model, nodes[-1].outputs[0], f"{base}/blocks_major", [g, p, kb], dtype))
    weights = np.stack([np.ascontiguousarray(w.T) for w in blocks.weights(matrix)])  # [g, kb, nb]
    nodes.append(_node(model, "MatMul", [nodes[-1].outputs[0], new_initializer(model, f"{base}.block_weights",
                                                                                weights)],
                       f"{base}/blocks", [g, p, nb], dtype))
    nodes.append(_node_perm(model, nodes[-1].outputs[0], f"{base}/rows_major", [p, g, nb], dtype))
    out_shape = new_initializer(model, f"{base}.out_shape", np.array([*lead, g * nb], np.int64))
    nodes.append(_node(model, "Reshape", [nodes[-1].outputs[0], out_shape], f"{base}/blocks_merge",
                       [*lead, g * nb], dtype))
    return nodes, nodes[-1].outputs[0]


def _node_perm(model: ir.Model, x: ir.Value, name: str, shape, dtype) -> ir.Node:
    node = ir.Node("", "Transpose", [x], attributes=[ir.AttrInt64s("perm", [1, 0, 2])], name=name)
    out = node.outputs[0]
    out.name, out.shape, out.type = f"{name}_out", ir.Shape(list(shape)), ir.TensorType(dtype)
    return node


def _rewrite(model: ir.Model, node: ir.Node, matrix: np.ndarray, blocks: block_diagonal.Blocks) -> None:
    base = node.name or "layer"
    x = node.inputs[0]
    lead = [int(d) for d in x.shape][:-1]
    dtype = x.dtype
    new_nodes: list[ir.Node] = []
    parts = []
    equal = len({(r.size, c.size) for r, c in zip(blocks.rows, blocks.cols)}) == 1 and not blocks.zero_rows.size
    if equal and BATCHED:
        new_nodes, result = _batched(model, base, x, matrix, blocks)
        _finish(model, node, matrix, blocks, new_nodes, result)
        return
    for b, (rows, cols, w) in enumerate(zip(blocks.rows, blocks.cols, blocks.weights(matrix))):
        index = new_initializer(model, f"{base}.block{b}_columns", cols.astype(np.int64))
        gather = _node(model, "Gather", [x, index], f"{base}/block{b}_in", [*lead, cols.size], dtype, axis=-1)
        weight = new_initializer(model, f"{base}.block{b}_weight", np.ascontiguousarray(w.T))
        product = _node(model, "MatMul", [gather.outputs[0], weight], f"{base}/block{b}", [*lead, rows.size], dtype)
        new_nodes += [gather, product]
        parts.append(product.outputs[0])
    if blocks.zero_rows.size:
        zeros = np.zeros([*lead, blocks.zero_rows.size], dtype=matrix.dtype)
        parts.append(new_initializer(model, f"{base}.zero_outputs", zeros))
    n = matrix.shape[0]
    result = parts[0]
    if len(parts) > 1:
        concat = _node(model, "Concat", parts, f"{base}/concat", [*lead, n], dtype, axis=-1)
        new_nodes.append(concat)
        result = concat.outputs[0]
    _finish(model, node, matrix, blocks, new_nodes, result)


def _finish(model: ir.Model, node: ir.Node, matrix: np.ndarray, blocks: block_diagonal.Blocks,
            new_nodes: list[ir.Node], result: ir.Value) -> None:
    """Outputs from block order back to the layer's (one Gather unless already in order), the Gemm's ``C``, and
    the new nodes in the layer's place."""
    base = node.name or "layer"
    x = node.inputs[0]
    lead = [int(d) for d in x.shape][:-1]
    dtype = x.dtype
    n = matrix.shape[0]
    order = np.concatenate([*blocks.rows, blocks.zero_rows])
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
    replace_layer(model, node, new_nodes)
