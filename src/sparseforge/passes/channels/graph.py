"""The channel graph of a model: visits every node once, in graph order, building the slot graph
(:mod:`~sparseforge.passes.channels.slots`) and the per-channel constants
(:mod:`~sparseforge.passes.channels.constants`) side by side. Read-only once built.

A node a visitor cannot handle pins the channel tensors it reads (with the visitor's reason); after the visit,
graph outputs and tensors read by nodes nobody handled are pinned too.
"""

from __future__ import annotations

import onnx_ir as ir

from sparseforge.ir.weights import view_of
from sparseforge.passes.channels.constants import ChannelConstants
from sparseforge.passes.channels.context import BuildContext
from sparseforge.passes.channels.flow import (
    BINARY_OPS,
    CHANNELWISE_OPS,
    UNARY_OPS,
    visit_batchnorm,
    visit_channelwise,
    visit_concat,
    visit_elementwise,
    visit_flatten,
)
from sparseforge.passes.channels.slots import SlotGraph, Unsupported
from sparseforge.passes.channels.weight_ops import visit_weight_op


class ChannelGraph:
    """``slots`` (components, uses, pins) and ``consts`` (per-channel constants) of ``model``."""

    def __init__(self, model: ir.Model):
        self.model = model
        self.slots = SlotGraph()
        self.consts = ChannelConstants(model.opset_imports.get("", 18))
        self._ctx = BuildContext(self.slots, self.consts)
        for node in model.graph:
            try:
                self._visit(node)
            except Unsupported as exc:
                for value in node.inputs:
                    if value is not None and value in self.slots.tensors:
                        self.slots.pin(self.slots.tensors[value].slots, exc.reason)
            self.consts.track_loss(node)
        self.slots.pin_unhandled()

    def _visit(self, node: ir.Node) -> None:
        if node.domain not in ("", "ai.onnx"):
            return
        op = node.op_type
        view = view_of(node)
        if view is not None:
            visit_weight_op(self._ctx, node, view)
        elif op in UNARY_OPS or op in BINARY_OPS:
            visit_elementwise(self._ctx, node)
        elif op == "BatchNormalization":
            visit_batchnorm(self._ctx, node)
        elif op == "Concat":
            visit_concat(self._ctx, node)
        elif op in CHANNELWISE_OPS:
            visit_channelwise(self._ctx, node)
        elif op in ("Flatten", "Reshape"):
            visit_flatten(self._ctx, node)
