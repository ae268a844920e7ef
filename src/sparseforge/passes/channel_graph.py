"""Channel dependency analysis for exact channel removal.

Every tensor on a channel path gets one *slot* per channel. Ops that tie channels together (elementwise ops,
residual Add, BatchNorm, pooling, depthwise Conv) unify slots; Concat concatenates them; weight ops start new
slots (their outputs) and end them (their reduction input). Slots are merged with a union-find; a *component*
is a set of channels that must be removed together or not at all.

For each component we record:

* sources: weight ops whose output row produces the channel (sliced on removal);
* sinks: weight ops that reduce over the channel (columns sliced on removal, constant folded into their bias);
* params: constant operands laid out along the channel axis (sliced on removal);
* pins: reasons the channel cannot be removed (graph output, graph input, an op we cannot slice through, ...).

Alongside, a per-channel constant analysis tells, for each tensor, which channels hold one constant value at
every position (NaN = not constant): a dead weight row yields its bias, and constants are propagated through
elementwise ops by evaluating the ONNX op itself (onnx.reference) on a one-element-per-channel probe.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import numpy as np
import onnx
import onnx.reference
import onnx_ir as ir

from sparseforge.ir.weights import WeightView, constant_array, view_of

logger = logging.getLogger(__name__)

UNARY_OPS = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu", "Erf", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Mish", "Clip", "Identity", "Abs", "Neg", "Exp", "Sqrt", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign", "Sin", "Cos", "Log", "ThresholdedRelu", "Shrink", "Dropout", "Swish",
})
BINARY_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu"})
#: Ops that act on each channel separately and map a constant channel to the same constant.
CHANNEL_PRESERVING_OPS = frozenset({"MaxPool", "GlobalMaxPool", "GlobalAveragePool", "Resize", "Upsample"})
REDUCE_OPS = frozenset({"ReduceMean", "ReduceMax", "ReduceMin"})


class UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def make(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclasses.dataclass
class SinkUse:
    """A weight op reducing over channel ``channel`` of ``tensor`` through matrix ``columns``."""

    view: WeightView
    tensor: ir.Value
    channel: int
    columns: np.ndarray
    foldable: bool  # a constant channel can be folded into the bias (no zero padding in the way)


@dataclasses.dataclass
class ParamUse:
    """A constant operand ``node.inputs[index]`` laid out along ``axis`` with the channels of ``tensor``."""

    node: ir.Node
    index: int
    axis: int
    tensor: ir.Value


@dataclasses.dataclass
class FlattenUse:
    """A Flatten/Reshape merging channels with ``spatial`` trailing elements before 2-D weight ops."""

    node: ir.Node
    tensor: ir.Value  # the channel tensor being flattened
    spatial: int


@dataclasses.dataclass
class Tensor:
    value: ir.Value
    axis: int  # non-negative channel axis
    slots: np.ndarray


class ChannelGraph:
    """Slots, components and per-channel constants of a model (built once, read-only afterwards)."""

    def __init__(self, model: ir.Model):
        self.model = model
        self.uf = UnionFind()
        self.tensors: dict[ir.Value, Tensor] = {}
        self.consts: dict[ir.Value, np.ndarray] = {}
        self.pins: dict[int, list[str]] = {}
        self.handled: set[tuple[int, int]] = set()  # (id(node), id(value)) consumption we understand
        self.sources: list[tuple[WeightView, ir.Value]] = []
        self.sinks: list[SinkUse] = []
        self.params: list[ParamUse] = []
        self.flattens: list[FlattenUse] = []
        self.depthwise: list[tuple[WeightView, ir.Value]] = []
        #: where a tensor's channels stopped being constant, e.g. "padded depthwise Conv 'dw1'"
        self.const_lost: dict[ir.Value, str] = {}
        self._build()

    # ------------------------------------------------------------------ helpers

    def _pin(self, slots: Iterable[int], reason: str) -> None:
        for s in slots:
            self.pins.setdefault(int(s), []).append(reason)

    def _new_tensor(self, value: ir.Value, axis: int, count: int, consts: np.ndarray | None = None) -> Tensor:
        t = Tensor(value, axis, self.uf.make(count))
        self.tensors[value] = t
        self.consts[value] = consts if consts is not None else np.full(count, np.nan)
        return t

    def _tensor_for_input(self, value: ir.Value, axis: int, node: ir.Node) -> Tensor | None:
        """The channel tensor of ``value`` at ``axis``; creates pinned slots for unsliceable producers."""
        self.handled.add((id(node), id(value)))
        t = self.tensors.get(value)
        if t is not None:
            if t.axis != axis:
                self._pin(t.slots, f"'{value.name}' is used with channels on axis {axis} by '{node.name}'")
                return None
            return t
        count = _dim(value, axis)
        if count is None:
            return None
        t = self._new_tensor(value, axis, count)
        producer = value.producer()
        what = f"graph input '{value.name}'" if producer is None else f"{producer.op_type} '{producer.name}'"
        self._pin(t.slots, f"comes from {what}, which cannot be sliced")
        return t

    def _output_tensor_like(self, value: ir.Value, source: Tensor) -> Tensor | None:
        count = _dim(value, source.axis + (_rank(value) or 0) - (_rank(source.value) or 0))
        if count != len(source.slots):
            return None
        t = Tensor(value, source.axis + (_rank(value) - _rank(source.value)), source.slots.copy())
        self.tensors[value] = t
        self.consts[value] = np.full(len(t.slots), np.nan)
        return t

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        for node in self.model.graph:
            try:
                self._visit(node)
            except _Unsupported as exc:
                for value in node.inputs:
                    if value is not None and value in self.tensors:
                        self._pin(self.tensors[value].slots, exc.reason)
            self._track_const_loss(node)
        for value, t in self.tensors.items():
            if value.is_graph_output():
                self._pin(t.slots, f"'{value.name}' is a graph output (its shape must not change)")
            for user, _ in value.uses():
                if (id(user), id(value)) not in self.handled:
                    self._pin(t.slots, f"'{value.name}' feeds {user.op_type} '{user.name}', which mixes or "
                                       "reorders channels")

    def _track_const_loss(self, node: ir.Node) -> None:
        for out in node.outputs:
            if out not in self.consts or out in self.const_lost:
                continue
            y = self.consts[out]
            for value in node.inputs:
                x = self.consts.get(value) if value is not None else None
                if x is None:
                    continue
                if len(x) == len(y) and np.any(~np.isnan(x) & np.isnan(y)):
                    self.const_lost[out] = f"{node.op_type} '{node.name}'"
                    break
                if value in self.const_lost:
                    self.const_lost[out] = self.const_lost[value]
                    break

    def _visit(self, node: ir.Node) -> None:
        if node.domain not in ("", "ai.onnx"):
            return
        op = node.op_type
        view = view_of(node)
        if view is not None:
            self._visit_weight_op(node, view)
        elif op in UNARY_OPS or op in BINARY_OPS:
            self._visit_elementwise(node)
        elif op == "BatchNormalization":
            self._visit_batchnorm(node)
        elif op == "Concat":
            self._visit_concat(node)
        elif op in CHANNEL_PRESERVING_OPS or op in REDUCE_OPS or op in ("AveragePool", "Pad", "ReduceSum"):
            self._visit_channelwise(node)
        elif op in ("Flatten", "Reshape"):
            self._visit_flatten(node)

    def _visit_weight_op(self, node: ir.Node, view: WeightView) -> None:
        x = node.inputs[view.data_index]
        y = node.outputs[0]
        if view.data_index != 0:
            return  # W @ x: channels on a non-trailing axis; leave both sides alone
        if node.op_type == "Conv":
            in_ch = _dim(x, 1)
            out_ch = view.shape[0]
            if view.groups == 1:
                self._add_sink(node, view, x, axis=1, kernel=view.kernel_size, foldable=_conv_unpadded(node))
                self._add_source(view, y, axis=1)
            elif in_ch is not None and view.groups == in_ch == out_ch:
                self._visit_depthwise(node, view, x, y)
            else:
                reason = f"grouped Conv '{node.name}' (group={view.groups}) couples channels in groups"
                t = self._tensor_for_input(x, 1, node)
                if t is not None:
                    self._pin(t.slots, reason)
                out = self._new_tensor(y, 1, out_ch)
                self._pin(out.slots, reason)
            return
        if node.op_type == "Gemm":
            trans_a = int(node.attributes["transA"].value) if "transA" in node.attributes else 0
            if trans_a:
                raise _Unsupported(f"Gemm '{node.name}' reads its input transposed")
            for key in ("alpha", "beta"):
                if key in node.attributes and float(node.attributes[key].value) != 1.0:
                    raise _Unsupported(f"Gemm '{node.name}' has {key} != 1 (run NormalizeGemm first)")
            self._add_sink(node, view, x, axis=1, kernel=1, foldable=True)
            self._add_source(view, y, axis=1)
            return
        rank = _rank(x)
        if rank is None or rank < 2:
            raise _Unsupported(f"MatMul '{node.name}' input has unknown or vector rank")
        self._add_sink(node, view, x, axis=rank - 1, kernel=1, foldable=True)
        self._add_source(view, y, axis=rank - 1)

    def _add_sink(self, node: ir.Node, view: WeightView, x: ir.Value, *, axis: int, kernel: int,
                  foldable: bool) -> None:
        producer = x.producer()
        if producer is not None and producer.op_type in ("Flatten", "Reshape") and producer.inputs[0] in self.tensors \
                and any(f.node is producer for f in self.flattens):
            self.handled.add((id(node), id(x)))
            flat = next(f for f in self.flattens if f.node is producer)
            t = self.tensors[flat.tensor]
            for c in range(len(t.slots)):
                cols = np.arange(c * flat.spatial, (c + 1) * flat.spatial)
                self.sinks.append(SinkUse(view, flat.tensor, c, cols, foldable))
            return
        t = self._tensor_for_input(x, axis, node)
        if t is None:
            return
        if len(t.slots) * kernel != view.shape[1]:
            self._pin(t.slots, f"'{node.name}' reduction size does not match its input's channels")
            return
        for c in range(len(t.slots)):
            self.sinks.append(SinkUse(view, x, c, np.arange(c * kernel, (c + 1) * kernel), foldable))

    def _add_source(self, view: WeightView, y: ir.Value, *, axis: int) -> None:
        out_ch = view.shape[0]
        if _dim(y, axis) != out_ch:
            raise _Unsupported(f"'{view.node.name}' output shape unknown")
        dead = ~(view.matrix() != 0).any(axis=1)
        consts = np.where(dead, self._source_bias(view, y), np.nan)
        self._new_tensor(y, axis, out_ch, consts)
        self.sources.append((view, y))

    def _source_bias(self, view: WeightView, y: ir.Value) -> np.ndarray:
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
            raise _Unsupported(f"'{node.name}' has a non-constant bias")
        if array.size == 1:
            return np.full(out_ch, float(array.reshape(-1)[0]))
        if node.op_type == "Gemm" and array.shape[-1] == out_ch:
            self.params.append(ParamUse(node, bias_index, array.ndim - 1, y))  # [M, N] C: sliced by column
            return np.full(out_ch, np.nan)
        if node.op_type == "Gemm" and array.shape[-1] == 1:
            return np.full(out_ch, np.nan)
        raise _Unsupported(f"'{node.name}' has a bias that is not laid out per output channel")

    def _visit_depthwise(self, node: ir.Node, view: WeightView, x: ir.Value, y: ir.Value) -> None:
        t = self._tensor_for_input(x, 1, node)
        if t is None:
            raise _Unsupported(f"depthwise Conv '{node.name}' input has unknown channels")
        out = self._output_tensor_like(y, t)
        if out is None:
            raise _Unsupported(f"depthwise Conv '{node.name}' output shape unknown")
        w = view.matrix()
        bias = view.bias_array()
        b = np.zeros(len(t.slots)) if bias is None else bias.astype(np.float64)
        dead_w = ~(w != 0).any(axis=1)
        xin = self.consts[x]
        consts = np.full(len(t.slots), np.nan)
        consts[dead_w | (xin == 0)] = b[dead_w | (xin == 0)]
        if _conv_unpadded(node):
            known = ~np.isnan(xin) & ~(dead_w | (xin == 0))
            consts[known] = xin[known] * w[known].astype(np.float64).sum(axis=1) + b[known]
        self.consts[y] = consts
        self.depthwise.append((view, y))

    def _visit_elementwise(self, node: ir.Node) -> None:
        if node.op_type == "Dropout" and len(node.outputs) > 1 and node.outputs[1].uses():
            raise _Unsupported(f"Dropout '{node.name}' mask output is used")
        y = node.outputs[0]
        out_rank = _rank(y)
        if out_rank is None:
            raise _Unsupported(f"{node.op_type} '{node.name}' output rank unknown")
        channel_inputs: list[tuple[int, Tensor]] = []
        for i, value in enumerate(node.inputs):
            if value is None or constant_array(value) is not None:
                continue
            t = self.tensors.get(value)
            if t is not None:
                channel_inputs.append((i, t))
        if not channel_inputs:
            return
        axes = {t.axis + out_rank - _rank(t.value) for _, t in channel_inputs}
        counts = {len(t.slots) for _, t in channel_inputs}
        if len(axes) != 1 or len(counts) != 1:
            raise _Unsupported(f"{node.op_type} '{node.name}' combines tensors with different channel layouts")
        axis, count = axes.pop(), counts.pop()
        if _dim(y, axis) != count:
            raise _Unsupported(f"{node.op_type} '{node.name}' broadcasts along the channel axis")
        channel_inputs = []
        uniform = True
        for i, value in enumerate(node.inputs):
            if value is None:
                continue
            array = constant_array(value)
            rank_in = _rank(value)
            aligned = axis - (out_rank - rank_in) if rank_in is not None else -1
            if array is None:
                tracked = value in self.tensors
                if 0 <= aligned and _dim(value, aligned) == count and (count != 1 or tracked):
                    t = self._tensor_for_input(value, aligned, node)
                    if t is None:
                        raise _Unsupported(f"{node.op_type} '{node.name}' input has unknown channels")
                    channel_inputs.append((i, t))
                elif rank_in is None or (0 <= aligned and _dim(value, aligned) != 1):
                    raise _Unsupported(f"{node.op_type} '{node.name}' input does not broadcast per channel")
                else:
                    uniform = False  # a tensor broadcast over channels: channel values vary
                continue
            aligned = axis - (out_rank - array.ndim)
            if 0 <= aligned < array.ndim and array.shape[aligned] == count and count != 1:
                self.params.append(ParamUse(node, i, aligned, y))
            elif 0 <= aligned < array.ndim and array.shape[aligned] != 1:
                raise _Unsupported(f"{node.op_type} '{node.name}' has a constant that does not broadcast per channel")
            if any(d != 1 for k, d in enumerate(array.shape) if k != aligned):
                uniform = False
        if not channel_inputs:
            return
        first = channel_inputs[0][1]
        for _, t in channel_inputs[1:]:
            for a, b in zip(first.slots, t.slots):
                self.uf.union(int(a), int(b))
        out = Tensor(y, axis, first.slots.copy())
        self.tensors[y] = out
        self.consts[y] = self._evaluate(node, axis, out_rank, count) if uniform else np.full(count, np.nan)

    def _evaluate(self, node: ir.Node, axis: int, out_rank: int, count: int) -> np.ndarray:
        """Per-channel constants of ``node``'s output, evaluating the op on one-element-per-channel probes."""
        feeds: dict[str, np.ndarray] = {}
        known = np.ones(count, dtype=bool)
        names: list[str] = []
        inputs_info = []
        for i, value in enumerate(node.inputs):
            name = f"in{i}"
            names.append(name if value is not None else "")
            if value is None:
                continue
            array = constant_array(value)
            if array is None:
                t = self.tensors[value]
                consts = self.consts[value]
                known &= ~np.isnan(consts)
                shape = [1] * _rank(value)
                shape[t.axis] = count
                array = np.where(np.isnan(consts), 0.0, consts).reshape(shape).astype(_np_dtype(value))
            feeds[name] = array
            inputs_info.append(onnx.helper.make_tensor_value_info(name, _onnx_dtype(array), array.shape))
        if not known.any():
            return np.full(count, np.nan)
        try:
            proto = ir.serde.serialize_node(node)
            del proto.input[:]
            proto.input.extend(names)
            del proto.output[:]
            proto.output.extend(["out"] + [f"unused{k}" for k in range(len(node.outputs) - 1)])
            graph = onnx.helper.make_graph([proto], "probe", inputs_info, [
                onnx.helper.make_tensor_value_info("out", onnx.TensorProto.UNDEFINED, None)])
            opset = [onnx.helper.make_opsetid("", self.model.opset_imports.get("", 18))]
            session = onnx.reference.ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=opset))
            result = np.asarray(session.run(None, feeds)[0], dtype=np.float64)
        except Exception as exc:  # an op the reference evaluator cannot run: channels stay "not constant"
            logger.debug("cannot evaluate %s %s on probes: %s", node.op_type, node.name, exc)
            return np.full(count, np.nan)
        if result.size != count:
            return np.full(count, np.nan)
        out = result.reshape(-1)
        return np.where(known & np.isfinite(out), out, np.nan)

    def _visit_batchnorm(self, node: ir.Node) -> None:
        x = node.inputs[0]
        t = self._tensor_for_input(x, 1, node) if x is not None else None
        params = [constant_array(v) for v in node.inputs[1:5]]
        if t is None or any(p is None for p in params) or len(node.outputs) > 1 and any(
                o.uses() for o in node.outputs[1:]):
            raise _Unsupported(f"BatchNormalization '{node.name}' is not in inference form with constant parameters")
        out = self._output_tensor_like(node.outputs[0], t)
        if out is None:
            raise _Unsupported(f"BatchNormalization '{node.name}' output shape unknown")
        for i in range(1, 5):
            self.params.append(ParamUse(node, i, 0, node.outputs[0]))
        scale, bias, mean, var = (p.astype(np.float64) for p in params)
        eps = float(node.attributes["epsilon"].value) if "epsilon" in node.attributes else 1e-5
        self.consts[node.outputs[0]] = (self.consts[x] - mean) / np.sqrt(var + eps) * scale + bias

    def _visit_concat(self, node: ir.Node) -> None:
        y = node.outputs[0]
        rank = _rank(y)
        axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 0
        axis = axis + rank if rank is not None and axis < 0 else axis
        parts = [(v, self.tensors.get(v)) for v in node.inputs if v is not None]
        tracked = [t for _, t in parts if t is not None]
        if not tracked:
            return
        channel_axis = tracked[0].axis
        if any(t.axis != channel_axis for t in tracked):
            raise _Unsupported(f"Concat '{node.name}' mixes channel layouts")
        if axis == channel_axis:
            tensors = [self._tensor_for_input(v, channel_axis, node) for v, _ in parts]
            if any(t is None for t in tensors):
                raise _Unsupported(f"Concat '{node.name}' input has unknown channels")
            slots = np.concatenate([t.slots for t in tensors])
            if _dim(y, axis) not in (None, len(slots)):
                raise _Unsupported(f"Concat '{node.name}' shape mismatch")
            self.tensors[y] = Tensor(y, axis, slots)
            self.consts[y] = np.concatenate([self.consts[t.value] for t in tensors])
        else:
            tensors = [self._tensor_for_input(v, channel_axis, node) for v, _ in parts]
            if any(t is None for t in tensors) or len({len(t.slots) for t in tensors}) != 1:
                raise _Unsupported(f"Concat '{node.name}' input has unknown channels")
            for t in tensors[1:]:
                for a, b in zip(tensors[0].slots, t.slots):
                    self.uf.union(int(a), int(b))
            self.tensors[y] = Tensor(y, channel_axis, tensors[0].slots.copy())
            stacked = np.stack([self.consts[t.value] for t in tensors])
            same = np.all(stacked == stacked[0], axis=0)
            self.consts[y] = np.where(same, stacked[0], np.nan)

    def _visit_channelwise(self, node: ir.Node) -> None:
        x = node.inputs[0]
        t = self.tensors.get(x) if x is not None else None
        if t is None:
            return
        op = node.op_type
        y = node.outputs[0]
        if len(node.outputs) > 1 and any(o.uses() for o in node.outputs[1:]):
            raise _Unsupported(f"{op} '{node.name}' has extra outputs in use")
        out_axis = t.axis
        if op in REDUCE_OPS or op == "ReduceSum":
            axes = _reduce_axes(node, _rank(x))
            if axes is None or t.axis in axes:
                raise _Unsupported(f"{op} '{node.name}' reduces over the channel axis")
            keepdims = int(node.attributes["keepdims"].value) if "keepdims" in node.attributes else 1
            if not keepdims:
                out_axis = t.axis - sum(1 for a in axes if a < t.axis)
        if op == "Pad" and not _pads_keep_axis(node, t.axis, _rank(x)):
            raise _Unsupported(f"Pad '{node.name}' pads the channel axis")
        if op in ("Resize", "Upsample") and not _resize_keeps_channels(node, x, t.axis):
            raise _Unsupported(f"{op} '{node.name}' resizes the channel axis")
        if _dim(y, out_axis) != len(t.slots):
            raise _Unsupported(f"{op} '{node.name}' changes the channel count")
        self.handled.add((id(node), id(x)))
        self.tensors[y] = Tensor(y, out_axis, t.slots.copy())
        self.consts[y] = self._channelwise_consts(node, x, t)

    def _channelwise_consts(self, node: ir.Node, x: ir.Value, t: Tensor) -> np.ndarray:
        c = self.consts[x]
        op = node.op_type
        if op in CHANNEL_PRESERVING_OPS or op in REDUCE_OPS:
            if op == "Resize" and _attr_str(node, "coordinate_transformation_mode") == "tf_crop_and_resize":
                return np.where(c == 0, 0.0, np.nan)
            return c.copy()
        if op == "ReduceSum":
            axes = _reduce_axes(node, _rank(x))
            sizes = [_dim(x, a) for a in axes or []]
            if any(s is None for s in sizes):
                return np.where(c == 0, 0.0, np.nan)
            return c * float(np.prod(sizes))
        if op == "AveragePool":
            padded = any(p != 0 for p in _ints(node, "pads")) or _attr_str(node, "auto_pad") not in ("", "NOTSET",
                                                                                                  "VALID")
            include = int(node.attributes["count_include_pad"].value) if "count_include_pad" in node.attributes else 0
            return c.copy() if (not padded or not include) else np.where(c == 0, 0.0, np.nan)
        if op == "Pad":
            mode = _attr_str(node, "mode") or "constant"
            if mode != "constant":
                return c.copy()
            pad_value = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None \
                else np.zeros(())
            if pad_value is None:
                return np.full(len(c), np.nan)
            return np.where(c == float(np.asarray(pad_value).reshape(-1)[0]), c, np.nan)
        return np.full(len(c), np.nan)

    def _visit_flatten(self, node: ir.Node) -> None:
        """Flatten/Reshape ``[N, C, *S] -> [N, C*prod(S)]`` whose every user is a 2-D weight op."""
        x, y = node.inputs[0], node.outputs[0]
        t = self.tensors.get(x)
        if t is None or t.axis != 1:
            return
        x_shape, y_shape = _shape(x), _shape(y)
        if x_shape is None or y_shape is None or len(y_shape) != 2 or y_shape[0] != x_shape[0]:
            return
        spatial = int(np.prod(x_shape[2:])) if len(x_shape) > 2 else 1
        if y_shape[1] != x_shape[1] * spatial:
            return
        if node.op_type == "Flatten":
            axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 1
            if axis != 1:
                return
        else:
            shape = constant_array(node.inputs[1])
            if shape is None:
                return
        users = [u for u, _ in y.uses()]
        if not users or y.is_graph_output():
            return
        for user in users:
            view = view_of(user)
            if view is None or view.data_index != 0 or user.op_type == "Conv" or \
                    (user.op_type == "Gemm" and "transA" in user.attributes and int(user.attributes["transA"].value)):
                return
        self.handled.add((id(node), id(x)))
        self.flattens.append(FlattenUse(node, x, spatial))

    # ------------------------------------------------------------------ queries

    def component(self, slot: int) -> int:
        return self.uf.find(int(slot))

    def pin_reasons(self) -> dict[int, list[str]]:
        """Pin reasons keyed by component root."""
        out: dict[int, list[str]] = {}
        for slot, reasons in self.pins.items():
            out.setdefault(self.component(slot), []).extend(reasons)
        return out


class _Unsupported(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _shape(value: ir.Value) -> list[int] | None:
    if value.shape is None or not value.shape.is_static():
        return None
    return [int(d) for d in value.shape]


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def _dim(value: ir.Value, axis: int) -> int | None:
    shape = value.shape
    if shape is None or axis < 0 or axis >= len(shape):
        return None
    d = shape[axis]
    return int(d) if isinstance(d, int) else None


def _ints(node: ir.Node, name: str) -> list[int]:
    attr = node.attributes.get(name)
    return [] if attr is None else [int(v) for v in attr.value]


def _attr_str(node: ir.Node, name: str) -> str:
    attr = node.attributes.get(name)
    if attr is None:
        return ""
    v = attr.value
    return v.decode() if isinstance(v, bytes) else str(v)


def _conv_unpadded(node: ir.Node) -> bool:
    auto_pad = _attr_str(node, "auto_pad")
    if auto_pad not in ("", "NOTSET", "VALID"):
        return False
    return all(p == 0 for p in _ints(node, "pads"))


def _reduce_axes(node: ir.Node, rank: int | None) -> list[int] | None:
    if rank is None:
        return None
    axes: list[int] | None
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        array = constant_array(node.inputs[1])
        axes = None if array is None else [int(a) for a in array.reshape(-1)]
    elif "axes" in node.attributes:
        axes = _ints(node, "axes")
    else:
        return None  # all axes (or noop_with_empty_axes): treat as mixing channels
    if axes is None:
        return None
    return [a + rank if a < 0 else a for a in axes]


def _pads_keep_axis(node: ir.Node, axis: int, rank: int | None) -> bool:
    if rank is None:
        return False
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        pads = constant_array(node.inputs[1])
        if pads is None:
            return False
        pads = [int(p) for p in pads.reshape(-1)]
        axes_in = node.inputs[3] if len(node.inputs) > 3 else None
        if axes_in is not None:
            axes = constant_array(axes_in)
            if axes is None:
                return False
            axes = [int(a) + rank if a < 0 else int(a) for a in axes.reshape(-1)]
            n = len(axes)
            return all(not (a == axis and (pads[k] or pads[k + n])) for k, a in enumerate(axes))
    else:
        pads = _ints(node, "pads")
    n = len(pads) // 2
    return axis >= n or (pads[axis] == 0 and pads[axis + n] == 0)


def _resize_keeps_channels(node: ir.Node, x: ir.Value, axis: int) -> bool:
    y = node.outputs[0]
    return _dim(x, axis) is not None and _dim(x, axis) == _dim(y, axis)


def _np_dtype(value: ir.Value) -> np.dtype:
    try:
        return np.dtype(value.dtype.numpy())
    except Exception:
        return np.dtype(np.float32)


def _onnx_dtype(array: np.ndarray) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
