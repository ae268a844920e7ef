"""Weight ops in the channel graph: they start channels (output rows: sources) and end them (reduction columns:
sinks); depthwise Conv carries its input's channels through; grouped Conv pins both sides."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.weights import WeightView, constant_array
from sparseforge.passes.channels.constants import ChannelConstants
from sparseforge.passes.channels.context import BuildContext
from sparseforge.passes.channels.shapes import conv_unpadded, dim, rank
from sparseforge.passes.channels.slots import ParamUse, SinkUse, Unsupported


def visit_weight_op(ctx: BuildContext, node: ir.Node, view: WeightView) -> None:
    slots, consts = ctx.slots, ctx.consts
    x = node.inputs[view.data_index]
    y = node.outputs[0]
    if view.data_index != 0:
        return  # W @ x: channels on a non-trailing axis; leave both sides alone
    if node.op_type == "Conv":
        in_ch = dim(x, 1)
        out_ch = view.shape[0]
        if view.groups == 1:
            _add_sink(ctx, node, view, x, axis=1, kernel=view.kernel_size, foldable=conv_unpadded(node))
            _add_source(ctx, view, y, axis=1)
        elif in_ch is not None and view.groups == in_ch == out_ch:
            _visit_depthwise(ctx, node, view, x, y)
        else:
            reason = f"grouped Conv '{node.name}' (group={view.groups}) couples channels in groups"
            t = ctx.input(x, 1, node)
            if t is not None:
                slots.pin(t.slots, reason)
            out = slots.new_tensor(y, 1, out_ch)
            consts.set_unknown(y, out_ch)
            slots.pin(out.slots, reason)
        return
    if node.op_type == "Gemm":
        trans_a = int(node.attributes["transA"].value) if "transA" in node.attributes else 0
        if trans_a:
            raise Unsupported(f"Gemm '{node.name}' reads its input transposed")
        for key in ("alpha", "beta"):
            if key in node.attributes and float(node.attributes[key].value) != 1.0:
                raise Unsupported(f"Gemm '{node.name}' has {key} != 1 (run NormalizeGemm first)")
        _add_sink(ctx, node, view, x, axis=1, kernel=1, foldable=True)
        _add_source(ctx, view, y, axis=1)
        return
    rank_x = rank(x)
    if rank_x is None or rank_x < 2:
        raise Unsupported(f"MatMul '{node.name}' input has unknown or vector rank")
    _add_sink(ctx, node, view, x, axis=rank_x - 1, kernel=1, foldable=True)
    _add_source(ctx, view, y, axis=rank_x - 1)


def _add_sink(ctx: BuildContext, node: ir.Node, view: WeightView, x: ir.Value, *,
              axis: int, kernel: int, foldable: bool) -> None:
    slots = ctx.slots
    producer = x.producer()
    if producer is not None and producer.op_type in ("Flatten", "Reshape") and producer.inputs[0] in slots.tensors \
            and any(f.node is producer for f in slots.flattens):
        slots.handled.add((id(node), id(x)))
        flat = next(f for f in slots.flattens if f.node is producer)
        t = slots.tensors[flat.tensor]
        for c in range(len(t.slots)):
            cols = np.arange(c * flat.spatial, (c + 1) * flat.spatial)
            slots.sinks.append(SinkUse(view, flat.tensor, c, cols, foldable))
        return
    t = ctx.input(x, axis, node)
    if t is None:
        return
    if len(t.slots) * kernel != view.shape[1]:
        slots.pin(t.slots, f"'{node.name}' reduction size does not match its input's channels")
        return
    for c in range(len(t.slots)):
        slots.sinks.append(SinkUse(view, x, c, np.arange(c * kernel, (c + 1) * kernel), foldable))


def _add_source(ctx: BuildContext, view: WeightView, y: ir.Value, *, axis: int) -> None:
    slots, consts = ctx.slots, ctx.consts
    out_ch = view.shape[0]
    if dim(y, axis) != out_ch:
        raise Unsupported(f"'{view.node.name}' output shape unknown")
    bias = _source_bias(ctx, view, y)
    slots.new_tensor(y, axis, out_ch)
    consts.set(y, ChannelConstants.weight_output(view, bias))
    slots.sources.append((view, y))


def _source_bias(ctx: BuildContext, view: WeightView, y: ir.Value) -> np.ndarray:
    """Per-output-channel constant added after the product (NaN where it varies along other axes)."""
    out_ch = view.shape[0]
    node = view.node
    bias_index = 2 if node.op_type in ("Conv", "Gemm") else None
    value = node.inputs[bias_index] if bias_index is not None and len(node.inputs) > bias_index else None
    if value is None:
        return np.zeros(out_ch)
    if view.bias is not None:
        return view.bias_array().astype(np.float64)
    array = constant_array(value)
    if array is None:
        raise Unsupported(f"'{node.name}' has a non-constant bias")
    if array.size == 1:
        return np.full(out_ch, float(array.reshape(-1)[0]))
    if node.op_type == "Gemm" and array.shape[-1] == out_ch:
        ctx.slots.params.append(ParamUse(node, bias_index, array.ndim - 1, y))  # [M, N] C: sliced by column
        return np.full(out_ch, np.nan)
    if node.op_type == "Gemm" and array.shape[-1] == 1:
        return np.full(out_ch, np.nan)
    raise Unsupported(f"'{node.name}' has a bias that is not laid out per output channel")


def _visit_depthwise(ctx: BuildContext, node: ir.Node, view: WeightView, x: ir.Value,
                     y: ir.Value) -> None:
    slots, consts = ctx.slots, ctx.consts
    t = ctx.input(x, 1, node)
    if t is None:
        raise Unsupported(f"depthwise Conv '{node.name}' input has unknown channels")
    out = slots.output_like(y, t)
    if out is None:
        raise Unsupported(f"depthwise Conv '{node.name}' output shape unknown")
    consts.set(y, consts.depthwise(node, view, x))
    slots.depthwise.append((view, y))
