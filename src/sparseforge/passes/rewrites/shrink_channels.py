"""ShrinkChannels (exact): physically remove channels that carry no information.

A channel component (see :mod:`sparseforge.passes.channels`) is removed when every weight op that reduces over it
either has all-zero weights for it, or sees it as a known constant that can be folded into its bias (no zero
padding between the constant and the weights; the decision is :func:`~sparseforge.passes.channels.plan.plan_removal`).
This covers:

* dead output channels/neurons whose constant output is zero (e.g. zero bias, act(0) = 0);
* dead channels with a nonzero constant act(b): folded into the bias of Linear / unpadded-conv consumers;
* input channels whose weight columns are all zero, when the producer feeds nothing else;

carried consistently through elementwise ops, BatchNorm, pooling, depthwise Conv, Reshape/Flatten, residual Add
and Concat. Graph inputs and outputs never change shape; a tensor never loses all its channels. First, dead
attention heads (zero value rows or zero output-projection columns) are removed through the attention pattern
(:mod:`sparseforge.passes.channels.heads`).

Exactness: only zero terms are dropped and constants are folded in float64 then rounded to the weight dtype, so
outputs match the original up to fp32 summation order (rtol ~1e-5).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import onnx_ir as ir

from sparseforge.ir.weights import WeightView, constant_array
from sparseforge.passes.canonicalize import infer_shapes, new_initializer
from sparseforge.passes.channels.graph import ChannelGraph
from sparseforge.passes.channels.heads import shrink_heads
from sparseforge.passes.channels.plan import RemovalPlan, plan_removal
from sparseforge.passes.infra import PassReport, ReportingPass


@dataclasses.dataclass
class _WeightEdit:
    view: WeightView
    row_keep: np.ndarray | None = None
    col_keep: np.ndarray | None = None  # over matrix columns
    in_keep: np.ndarray | None = None  # over input channels (Conv)
    bias_delta: np.ndarray | None = None
    matrix: np.ndarray | None = None  # the weight, decoded once per layer

    def weight(self) -> np.ndarray:
        if self.matrix is None:
            self.matrix = self.view.matrix()
        return self.matrix


class ShrinkChannelsPass(ReportingPass):
    """Remove dead channels exactly; repeat until nothing more can be removed (at most ``max_rounds``)."""

    name = "ShrinkChannels"

    def __init__(self, max_rounds: int = 8):
        super().__init__()
        self.max_rounds = max_rounds

    def run(self, model: ir.Model, report: PassReport) -> None:
        infer_shapes(model)  # channel counts come from static shapes
        shrink_heads(model, report)
        graph = ChannelGraph(model)
        plan = plan_removal(graph)
        for _ in range(self.max_rounds):
            if not self._apply(model, graph, plan, report):
                break
            ir.passes.common.RemoveUnusedNodesPass()(model)
            graph = ChannelGraph(model)
            plan = plan_removal(graph)
        self._report_kept(graph, plan, report)

    # ------------------------------------------------------------------ application

    def _apply(self, model: ir.Model, graph: ChannelGraph, plan: RemovalPlan, report: PassReport) -> int:
        slots = graph.slots
        keep = {v: np.array([slots.component(s) not in plan.removed for s in t.slots], dtype=bool)
                for v, t in slots.tensors.items()}
        if all(k.all() for k in keep.values()):
            return 0
        edits: dict[int, _WeightEdit] = {}

        def edit(view: WeightView) -> _WeightEdit:
            return edits.setdefault(id(view.node), _WeightEdit(view))

        for view, y in slots.sources:
            if not keep[y].all():
                edit(view).row_keep = keep[y]
        for sink in slots.sinks:
            mask = keep[sink.tensor]
            if mask[sink.channel]:
                continue
            e = edit(sink.view)
            mat = e.weight()
            if e.col_keep is None:
                e.col_keep = np.ones(mat.shape[1], dtype=bool)
            e.col_keep[sink.columns] = False
            cols = mat[:, sink.columns].astype(np.float64)
            value = graph.consts[sink.tensor][sink.channel]
            if cols.any() and value != 0:
                delta = cols.sum(axis=1) * value
                e.bias_delta = delta if e.bias_delta is None else e.bias_delta + delta
        for view, y in slots.depthwise:
            if not keep[y].all():
                edit(view).row_keep = keep[y]
        for e in edits.values():
            report.counts["output-channels-removed"] += self._apply_weight_edit(model, graph, e, report)
        for param in slots.params:
            mask = keep[param.tensor]
            if mask.all():
                continue
            array = constant_array(param.node.inputs[param.index])
            sliced = np.compress(mask, array, axis=param.axis)
            param.node.replace_input_with(param.index, new_initializer(
                model, f"{param.node.inputs[param.index].name}_shrunk", sliced))
        for flat in slots.flattens:
            mask = keep[flat.tensor]
            if mask.all() or flat.node.op_type != "Reshape":
                continue
            shape = constant_array(flat.node.inputs[1]).copy()
            if shape[1] > 0:
                shape[1] = int(mask.sum()) * flat.spatial
                flat.node.replace_input_with(1, new_initializer(model, f"{flat.node.inputs[1].name}_shrunk",
                                                                shape.astype(np.int64)))
        for value, mask in keep.items():
            if mask.all() or value.shape is None:
                continue
            dims = list(value.shape)
            dims[slots.tensors[value].axis] = int(mask.sum())
            value.shape = ir.Shape(dims)
        for flat in slots.flattens:
            mask = keep[flat.tensor]
            out = flat.node.outputs[0]
            if not mask.all() and out.shape is not None:
                out.shape = ir.Shape([out.shape[0], int(mask.sum()) * flat.spatial])
        return len(plan.removed)

    def _apply_weight_edit(self, model: ir.Model, graph: ChannelGraph, e: _WeightEdit, report: PassReport) -> int:
        view = e.view
        node = view.node
        mat = view.matrix().copy()
        bias = view.bias_array()
        out_ch = mat.shape[0]
        if e.bias_delta is not None:
            base = np.zeros(out_ch, dtype=np.float64) if bias is None else bias.astype(np.float64)
            bias = (base + e.bias_delta).astype(mat.dtype)
        notes = []
        removed = 0
        if e.col_keep is not None:
            if node.op_type == "Conv":
                k = view.kernel_size
                in_keep = e.col_keep.reshape(-1, k)[:, 0]
                stored = view.stored()
                new_w = np.compress(in_keep, stored, axis=1)
                mat = new_w.reshape(stored.shape[0], -1)
            else:
                mat = mat[:, e.col_keep]
            dropped = int((~e.col_keep).sum()) // max(view.kernel_size, 1)
            notes.append(f"removed {dropped} input channel(s)")
        if e.row_keep is not None:
            mat = mat[e.row_keep]
            if bias is not None:
                bias = bias[e.row_keep]
            removed = int((~e.row_keep).sum())
            notes.append(f"removed {removed} output channel(s)")
        if e.bias_delta is not None:
            notes.append("folded constant channels into the bias")
        if node.op_type == "Conv":
            stored_shape = list(view.stored().shape)
            stored_shape[0] = mat.shape[0]
            stored_shape[1] = mat.shape[1] // max(view.kernel_size, 1) if view.groups == 1 else 1
            new_stored = np.ascontiguousarray(mat.reshape(stored_shape))
            if view.groups != 1:  # depthwise: group count follows the channel count
                node.attributes["group"] = ir.AttrInt64("group", int(mat.shape[0]))
        else:
            new_stored = np.ascontiguousarray(mat if view.out_axis == 0 else mat.T)
        node.replace_input_with(view.weight_index, new_initializer(model, f"{view.weight.name}_shrunk", new_stored))
        if bias is not None and (e.row_keep is not None or e.bias_delta is not None):
            self._set_bias(model, view, bias, e.bias_delta is not None)
        self.stamp(node, "; ".join(notes))
        report.changed("shrunk", f"{node.op_type}: " + "; ".join(notes), view.name)
        return removed

    def _set_bias(self, model: ir.Model, view: WeightView, bias: np.ndarray, folded: bool) -> None:
        node = view.node
        if node.op_type in ("Conv", "Gemm"):
            if view.bias is None and len(node.inputs) > 2 and node.inputs[2] is not None:
                # Gemm with a broadcast C (scalar or [M, N]): add the folded bias through a new Add
                if folded:
                    self._add_bias_after(model, node, bias)
                return
            base = view.bias.name if view.bias is not None else f"{view.weight.name}_bias"
            shape = (1, bias.size) if view.bias is not None and constant_array(view.bias).ndim == 2 else (bias.size,)
            value = new_initializer(model, f"{base}_shrunk", bias.reshape(shape))
            if len(node.inputs) > 2:
                node.replace_input_with(2, value)
            else:
                node.resize_inputs(3)
                node.replace_input_with(2, value)
            return
        if folded:  # MatMul has no bias input
            self._add_bias_after(model, node, bias)

    def _add_bias_after(self, model: ir.Model, node: ir.Node, bias: np.ndarray) -> None:
        out = node.outputs[0]
        const = new_initializer(model, f"{node.name}_folded_bias", bias)
        add = ir.Node("", "Add", [out, const], name=f"{node.name}_folded_bias_add")
        result = add.outputs[0]
        result.name = f"{out.name}_biased"
        result.shape = out.shape
        result.type = out.type
        uses = list(out.uses())
        for user, index in uses:
            if user is not add:
                user.replace_input_with(index, result)
        if out.is_graph_output():
            outputs = model.graph.outputs
            outputs[outputs.index(out)] = result
        model.graph.insert_after(node, add)
        self.stamp(add, f"constant channels folded into a bias after '{node.name}'")

    # ------------------------------------------------------------------ reporting

    def _report_kept(self, graph: ChannelGraph, plan: RemovalPlan, report: PassReport) -> None:
        slots = graph.slots
        for view, y in slots.sources:
            t = slots.tensors.get(y)
            if t is None:
                continue
            dead = np.flatnonzero(~(view.matrix() != 0).any(axis=1))
            kept = [int(c) for c in dead if slots.component(t.slots[c]) not in plan.removed]
            if kept:
                reason = plan.blocked.get(slots.component(t.slots[kept[0]]), ["unknown"])[0]
                report.note("kept.dead-output", f"{len(kept)} dead output channel(s) kept: {reason}", view.name)
        kept_inputs: dict[str, list[str]] = defaultdict(list)
        live_columns: dict[int, np.ndarray] = {}  # per layer, decoded once (not once per channel)
        for sink in slots.sinks:
            t = slots.tensors.get(sink.tensor)
            if t is None:
                continue
            live = live_columns.get(id(sink.view.node))
            if live is None:
                live = live_columns[id(sink.view.node)] = (sink.view.matrix() != 0).any(axis=0)
            if live[sink.columns].any():
                continue
            root = slots.component(t.slots[sink.channel])
            if root not in plan.removed:
                kept_inputs[sink.view.name].append(plan.blocked.get(root, ["unknown"])[0])
        for name, reasons in kept_inputs.items():
            report.note("kept.dead-input", f"{len(reasons)} dead input channel(s) kept: {reasons[0]}", name)
