"""What node visitors build into: the slot graph and the per-channel constants, kept in step."""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from sparseforge.passes.channels.constants import ChannelConstants
from sparseforge.passes.channels.slots import SlotGraph, Tensor


@dataclasses.dataclass
class BuildContext:
    slots: SlotGraph
    consts: ChannelConstants

    def input(self, value: ir.Value, axis: int, node: ir.Node) -> Tensor | None:
        """:meth:`SlotGraph.tensor_for_input`; a tensor seen for the first time has unknown constants."""
        known = value in self.slots.tensors
        t = self.slots.tensor_for_input(value, axis, node)
        if t is not None and not known:
            self.consts.set_unknown(value, len(t.slots))
        return t
