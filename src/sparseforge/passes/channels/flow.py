"""Ops channels flow through: elementwise ops, BatchNorm, Concat, pooling/reductions/Pad/Resize, and Flatten or
Reshape into 2-D weight ops. Each visitor links the output's slots to its inputs' and computes its constants; it
raises :class:`Unsupported` (pinning the inputs) when the op mixes channels."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir.weights import constant_array, view_of
from sparseforge.passes.channels.constants import CHANNEL_PRESERVING_OPS, REDUCE_OPS
from sparseforge.passes.channels.context import BuildContext
from sparseforge.passes.channels.shapes import dim, pads_keep_axis, rank, reduce_axes, resize_keeps_channels, shape
from sparseforge.passes.channels.slots import FlattenUse, ParamUse, Tensor, Unsupported

UNARY_OPS = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu", "Erf", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Mish", "Clip", "Identity", "Abs", "Neg", "Exp", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Sin", "Cos", "Log", "ThresholdedRelu", "Shrink", "Dropout", "Swish",
})
BINARY_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu"})
#: Ops visited by :func:`visit_channelwise`.
CHANNELWISE_OPS = CHANNEL_PRESERVING_OPS | REDUCE_OPS | {"AveragePool", "Pad", "ReduceSum"}


def visit_elementwise(ctx: BuildContext, node: ir.Node) -> None:
    slots, consts = ctx.slots, ctx.consts
    if node.op_type == "Dropout" and len(node.outputs) > 1 and node.outputs[1].uses():
        raise Unsupported(f"Dropout '{node.name}' mask output is used")
    y = node.outputs[0]
    out_rank = rank(y)
    if out_rank is None:
        raise Unsupported(f"{node.op_type} '{node.name}' output rank unknown")
    channel_inputs: list[tuple[int, Tensor]] = []
    for i, value in enumerate(node.inputs):
        if value is None or constant_array(value) is not None:
            continue
        t = slots.tensors.get(value)
        if t is not None:
            channel_inputs.append((i, t))
    if not channel_inputs:
        return
    axes = {t.axis + out_rank - rank(t.value) for _, t in channel_inputs}
    counts = {len(t.slots) for _, t in channel_inputs}
    if len(axes) != 1 or len(counts) != 1:
        raise Unsupported(f"{node.op_type} '{node.name}' combines tensors with different channel layouts")
    axis, count = axes.pop(), counts.pop()
    if dim(y, axis) != count:
        raise Unsupported(f"{node.op_type} '{node.name}' broadcasts along the channel axis")
    channel_inputs = []
    uniform = True
    for i, value in enumerate(node.inputs):
        if value is None:
            continue
        array = constant_array(value)
        rank_in = rank(value)
        aligned = axis - (out_rank - rank_in) if rank_in is not None else -1
        if array is None:
            tracked = value in slots.tensors
            if 0 <= aligned and dim(value, aligned) == count and (count != 1 or tracked):
                t = ctx.input(value, aligned, node)
                if t is None:
                    raise Unsupported(f"{node.op_type} '{node.name}' input has unknown channels")
                channel_inputs.append((i, t))
            elif rank_in is None or (0 <= aligned and dim(value, aligned) != 1):
                raise Unsupported(f"{node.op_type} '{node.name}' input does not broadcast per channel")
            else:
                uniform = False  # a tensor broadcast over channels: channel values vary
            continue
        aligned = axis - (out_rank - array.ndim)
        if 0 <= aligned < array.ndim and array.shape[aligned] == count and count != 1:
            slots.params.append(ParamUse(node, i, aligned, y))
        elif 0 <= aligned < array.ndim and array.shape[aligned] != 1:
            raise Unsupported(f"{node.op_type} '{node.name}' has a constant that does not broadcast per channel")
        if any(d != 1 for k, d in enumerate(array.shape) if k != aligned):
            uniform = False
    if not channel_inputs:
        return
    first = channel_inputs[0][1]
    for _, t in channel_inputs[1:]:
        slots.unify(first.slots, t.slots)
    slots.same_slots(y, axis, first.slots)
    if uniform:
        consts.set(y, consts.evaluate(node, count, {t.value: t.axis for _, t in channel_inputs}))
    else:
        consts.set_unknown(y, count)


def visit_batchnorm(ctx: BuildContext, node: ir.Node) -> None:
    x = node.inputs[0]
    t = ctx.input(x, 1, node) if x is not None else None
    params = [constant_array(v) for v in node.inputs[1:5]]
    if t is None or any(p is None for p in params) or len(node.outputs) > 1 and any(
            o.uses() for o in node.outputs[1:]):
        raise Unsupported(f"BatchNormalization '{node.name}' is not in inference form with constant parameters")
    out = ctx.slots.output_like(node.outputs[0], t)
    if out is None:
        raise Unsupported(f"BatchNormalization '{node.name}' output shape unknown")
    for i in range(1, 5):
        ctx.slots.params.append(ParamUse(node, i, 0, node.outputs[0]))
    ctx.consts.set(node.outputs[0], ctx.consts.batchnorm(node, x, params))


def visit_concat(ctx: BuildContext, node: ir.Node) -> None:
    slots, consts = ctx.slots, ctx.consts
    y = node.outputs[0]
    rank_y = rank(y)
    axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 0
    axis = axis + rank_y if rank_y is not None and axis < 0 else axis
    parts = [(v, slots.tensors.get(v)) for v in node.inputs if v is not None]
    tracked = [t for _, t in parts if t is not None]
    if not tracked:
        return
    channel_axis = tracked[0].axis
    if any(t.axis != channel_axis for t in tracked):
        raise Unsupported(f"Concat '{node.name}' mixes channel layouts")
    tensors = [ctx.input(v, channel_axis, node) for v, _ in parts]
    if axis == channel_axis:
        if any(t is None for t in tensors):
            raise Unsupported(f"Concat '{node.name}' input has unknown channels")
        joined = np.concatenate([t.slots for t in tensors])
        if dim(y, axis) not in (None, len(joined)):
            raise Unsupported(f"Concat '{node.name}' shape mismatch")
        slots.tensors[y] = Tensor(y, axis, joined)
        consts.set(y, consts.concat([t.value for t in tensors]))
    else:
        if any(t is None for t in tensors) or len({len(t.slots) for t in tensors}) != 1:
            raise Unsupported(f"Concat '{node.name}' input has unknown channels")
        for t in tensors[1:]:
            slots.unify(tensors[0].slots, t.slots)
        slots.same_slots(y, channel_axis, tensors[0].slots)
        consts.set(y, consts.agree([t.value for t in tensors]))


def visit_channelwise(ctx: BuildContext, node: ir.Node) -> None:
    x = node.inputs[0]
    t = ctx.slots.tensors.get(x) if x is not None else None
    if t is None:
        return
    op = node.op_type
    y = node.outputs[0]
    if len(node.outputs) > 1 and any(o.uses() for o in node.outputs[1:]):
        raise Unsupported(f"{op} '{node.name}' has extra outputs in use")
    out_axis = t.axis
    if op in REDUCE_OPS or op == "ReduceSum":
        axes = reduce_axes(node, rank(x))
        if axes is None or t.axis in axes:
            raise Unsupported(f"{op} '{node.name}' reduces over the channel axis")
        keepdims = int(node.attributes["keepdims"].value) if "keepdims" in node.attributes else 1
        if not keepdims:
            out_axis = t.axis - sum(1 for a in axes if a < t.axis)
    if op == "Pad" and not pads_keep_axis(node, t.axis, rank(x)):
        raise Unsupported(f"Pad '{node.name}' pads the channel axis")
    if op in ("Resize", "Upsample") and not resize_keeps_channels(node, x, t.axis):
        raise Unsupported(f"{op} '{node.name}' resizes the channel axis")
    if dim(y, out_axis) != len(t.slots):
        raise Unsupported(f"{op} '{node.name}' changes the channel count")
    ctx.slots.handled.add((id(node), id(x)))
    ctx.slots.same_slots(y, out_axis, t.slots)
    ctx.consts.set(y, ctx.consts.channelwise(node, x))


def visit_flatten(ctx: BuildContext, node: ir.Node) -> None:
    """Flatten/Reshape ``[N, C, *S] -> [N, C*prod(S)]`` whose every user is a 2-D weight op."""
    x, y = node.inputs[0], node.outputs[0]
    t = ctx.slots.tensors.get(x)
    if t is None or t.axis != 1:
        return
    x_shape, y_shape = shape(x), shape(y)
    if x_shape is None or y_shape is None or len(y_shape) != 2 or y_shape[0] != x_shape[0]:
        return
    spatial = int(np.prod(x_shape[2:])) if len(x_shape) > 2 else 1
    if y_shape[1] != x_shape[1] * spatial:
        return
    if node.op_type == "Flatten":
        axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 1
        if axis != 1:
            return
    elif constant_array(node.inputs[1]) is None:
        return
    users = [u for u, _ in y.uses()]
    if not users or y.is_graph_output():
        return
    for user in users:
        view = view_of(user)
        if view is None or view.data_index != 0 or user.op_type == "Conv" or \
                (user.op_type == "Gemm" and "transA" in user.attributes and int(user.attributes["transA"].value)):
            return
    ctx.slots.handled.add((id(node), id(x)))
    ctx.slots.flattens.append(FlattenUse(node, x, spatial))
