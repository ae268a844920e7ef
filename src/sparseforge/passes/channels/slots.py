"""Channel slots (the DepGraph part): which channels must be removed together, and which never can be.

Every tensor on a channel path gets one *slot* per channel. Ops that tie channels together unify slots in a
union-find; a *component* (set of unified slots) is removed entirely or not at all. :class:`SlotGraph` records, per
component, its sources (weight rows producing it), sinks (weight columns reducing over it), params (constants laid
out along it), flattens, depthwise convs, and pins (reasons it cannot be removed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import onnx_ir as ir

from sparseforge.ir.weights import WeightView
from sparseforge.passes.channels.shapes import dim, rank


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


class Unsupported(Exception):
    """Raised by a node visitor: the node's channel tensors are pinned with ``reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SlotGraph:
    """Slots, unions, uses and pins of the channel tensors of one model."""

    def __init__(self) -> None:
        self.uf = UnionFind()
        self.tensors: dict[ir.Value, Tensor] = {}
        self.pins: dict[int, list[str]] = {}
        self.handled: set[tuple[int, int]] = set()  # (id(node), id(value)) consumption we understand
        self.sources: list[tuple[WeightView, ir.Value]] = []
        self.sinks: list[SinkUse] = []
        self.params: list[ParamUse] = []
        self.flattens: list[FlattenUse] = []
        self.depthwise: list[tuple[WeightView, ir.Value]] = []

    # ------------------------------------------------------------------ building

    def pin(self, slots: Iterable[int], reason: str) -> None:
        for s in slots:
            self.pins.setdefault(int(s), []).append(reason)

    def new_tensor(self, value: ir.Value, axis: int, count: int) -> Tensor:
        """Fresh slots for ``value`` (a weight op output)."""
        t = Tensor(value, axis, self.uf.make(count))
        self.tensors[value] = t
        return t

    def same_slots(self, value: ir.Value, axis: int, slots: np.ndarray) -> Tensor:
        """``value`` carries the channels ``slots`` on ``axis`` (a channel-preserving op's output)."""
        t = Tensor(value, axis, slots.copy())
        self.tensors[value] = t
        return t

    def unify(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a, b):
            self.uf.union(int(x), int(y))

    def tensor_for_input(self, value: ir.Value, axis: int, node: ir.Node) -> Tensor | None:
        """The channel tensor of ``value`` at ``axis`` as read by ``node``; creates pinned slots for values whose
        producer cannot be sliced. None (and pins) when the layout disagrees or the channel count is unknown."""
        self.handled.add((id(node), id(value)))
        t = self.tensors.get(value)
        if t is not None:
            if t.axis != axis:
                self.pin(t.slots, f"'{value.name}' is used with channels on axis {axis} by '{node.name}'")
                return None
            return t
        count = dim(value, axis)
        if count is None:
            return None
        t = self.new_tensor(value, axis, count)
        producer = value.producer()
        what = f"graph input '{value.name}'" if producer is None else f"{producer.op_type} '{producer.name}'"
        self.pin(t.slots, f"comes from {what}, which cannot be sliced")
        return t

    def output_like(self, value: ir.Value, source: Tensor) -> Tensor | None:
        """``value`` with the channels of ``source`` (same count; axis shifted by the rank difference)."""
        count = dim(value, source.axis + (rank(value) or 0) - (rank(source.value) or 0))
        if count != len(source.slots):
            return None
        return self.same_slots(value, source.axis + (rank(value) - rank(source.value)), source.slots)

    def pin_unhandled(self) -> None:
        """Pin graph outputs and tensors read by a node no visitor understood (call once, after visiting)."""
        for value, t in self.tensors.items():
            if value.is_graph_output():
                self.pin(t.slots, f"'{value.name}' is a graph output (its shape must not change)")
            for user, _ in value.uses():
                if (id(user), id(value)) not in self.handled:
                    self.pin(t.slots, f"'{value.name}' feeds {user.op_type} '{user.name}', which mixes or "
                                      "reorders channels")

    # ------------------------------------------------------------------ queries

    def component(self, slot: int) -> int:
        return self.uf.find(int(slot))

    def pin_reasons(self) -> dict[int, list[str]]:
        """Pin reasons keyed by component root."""
        out: dict[int, list[str]] = {}
        for slot, reasons in self.pins.items():
            out.setdefault(self.component(slot), []).extend(reasons)
        return out
