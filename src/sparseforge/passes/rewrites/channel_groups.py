"""Channel-group pruning (DepGraph's idea on ShrinkChannels' channel graph): prune coupled channels together, so
that ``export`` removes every pruned channel exactly.

A *group* is a component of the channel graph (:mod:`sparseforge.passes.channels`): the channels that residual
Adds, BatchNorms, depthwise convolutions and elementwise ops tie together, with the weight rows producing them
(sources) and the weight columns reducing over them (sinks). Pinned groups (graph inputs/outputs, ops that mix
channels) are never pruned.

Importance of a group: the mean over its sources and sinks of the squared L2 norm of its rows / columns, each
relative to the mean of that layer's rows / columns (so layers of different scales compare); with calibration
statistics a sink's columns are weighted by their input energy ``H_cc``. The lowest-importance groups are pruned
while no channel tensor loses more than ``sparsity`` of its channels (rounded down) nor its last channel.

Pruning a group zeroes its source rows (the biases stay: the channel becomes the constant ``act(b)``, which
ShrinkChannels folds into the sinks exactly) and the columns of every sink that cannot fold a constant (zero
padding in between), then of any sink the removal plan still blocks on, so the group is always removable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from sparseforge.passes.channels.graph import ChannelGraph
from sparseforge.passes.channels.plan import plan_removal


def _relative_sq(matrix: np.ndarray, axis: int) -> np.ndarray:
    sq = (matrix.astype(np.float64) ** 2).sum(axis=axis)
    mean = float(sq.mean()) if sq.size else 0.0
    return sq / mean if mean > 0 else sq


class GroupPruner:
    """Chooses and zeroes channel groups of ``model``; ``matrices`` holds the changed ``(output, reduction)``
    weights by weight-value id (apply them with :meth:`changed`)."""

    def __init__(self, model: ir.Model, sparsity: float, stats: Mapping | None = None, skip=frozenset()):
        self.model = model
        self.sparsity = sparsity
        self.stats = stats or {}
        self.skip = set(skip)  # layers left as they are: no group that would change their weights is pruned
        self.matrices: dict[int, np.ndarray] = {}
        self.views: dict[int, object] = {}

    def _matrix(self, view) -> np.ndarray:
        key = id(view.weight)
        if key not in self.matrices:
            self.matrices[key] = np.array(view.matrix(), copy=True)
            self.views[key] = view
        return self.matrices[key]

    def importance(self, graph: ChannelGraph) -> dict[int, float]:
        slots = graph.slots
        terms: dict[int, list[float]] = defaultdict(list)
        for view, value in slots.sources:
            t = slots.tensors[value]
            rel = _relative_sq(view.matrix(), axis=1)
            for row, slot in enumerate(t.slots[:len(rel)]):
                terms[slots.component(slot)].append(float(rel[row]))
        per_sink: dict[int, np.ndarray] = {}
        for sink in slots.sinks:
            t = slots.tensors.get(sink.tensor)
            if t is None:
                continue
            key = id(sink.view.node)
            if key not in per_sink:
                mat = sink.view.matrix().astype(np.float64)
                stats = self.stats.get(sink.view.name)
                weight = mat ** 2
                if stats is not None and stats.hessian.shape[0] == 1:
                    weight = weight * np.maximum(np.diag(stats.hessian[0]), 0.0)[None, :]
                col = weight.sum(axis=0)
                mean = float(col.mean()) if col.size else 0.0
                per_sink[key] = col / mean if mean > 0 else col
            terms[slots.component(t.slots[sink.channel])].append(float(per_sink[key][sink.columns].sum()))
        return {root: float(np.mean(v)) for root, v in terms.items() if v}

    def choose(self, graph: ChannelGraph) -> set[int]:
        """The groups to prune (component roots)."""
        slots = graph.slots
        pinned = set(slots.pin_reasons())
        scores = self.importance(graph)
        members: dict[int, list[ir.Value]] = defaultdict(list)
        for value, t in slots.tensors.items():
            for root in {slots.component(s) for s in t.slots}:
                members[root].append(value)
        budget = {v: int(self.sparsity * len(t.slots)) for v, t in slots.tensors.items()}
        budget = {v: min(b, len(slots.tensors[v].slots) - 1) for v, b in budget.items()}
        taken: dict[ir.Value, int] = defaultdict(int)
        chosen: set[int] = set()
        has_source = {slots.component(s) for _, value in slots.sources for s in slots.tensors[value].slots}
        for view, value in slots.sources:  # groups whose pruning would change a skipped layer
            if view.name in self.skip:
                pinned |= {slots.component(s) for s in slots.tensors[value].slots}
        for sink in slots.sinks:
            t = slots.tensors.get(sink.tensor)
            if t is not None and sink.view.name in self.skip and not sink.foldable:
                pinned.add(slots.component(t.slots[sink.channel]))
        for root in sorted(scores, key=lambda r: scores[r]):
            if root in pinned or root not in has_source:
                continue
            counts = {v: sum(1 for s in slots.tensors[v].slots if slots.component(s) == root) for v in members[root]}
            if all(taken[v] + c <= budget[v] for v, c in counts.items()):
                chosen.add(root)
                for v, c in counts.items():
                    taken[v] += c
        return chosen

    def zero(self, graph: ChannelGraph, chosen: set[int], *, all_sinks: bool = False) -> None:
        """Zero the source rows of ``chosen`` groups, and the columns of their sinks that cannot fold a constant
        (every sink with ``all_sinks``)."""
        slots = graph.slots
        for view, value in slots.sources:
            rows = [r for r, s in enumerate(slots.tensors[value].slots) if slots.component(s) in chosen]
            if rows:
                self._matrix(view)[rows, :] = 0
        for sink in slots.sinks:
            t = slots.tensors.get(sink.tensor)
            if t is None or slots.component(t.slots[sink.channel]) not in chosen:
                continue
            if all_sinks or not sink.foldable:
                self._matrix(sink.view)[:, sink.columns] = 0

    def run(self, apply) -> set[int]:
        """Choose, zero, apply (``apply(view, matrix)`` writes a weight), then zero every sink of any chosen group
        the removal plan still keeps, and apply again. Returns the chosen groups."""
        graph = ChannelGraph(self.model)
        chosen = self.choose(graph)
        self.zero(graph, chosen)
        self._apply(apply)
        after = ChannelGraph(self.model)
        plan = plan_removal(after)
        blocked = {r for r in chosen if r in plan.blocked}
        if blocked:
            self.zero(after, blocked, all_sinks=True)
            self._apply(apply)
        return chosen

    def _apply(self, apply) -> None:
        for key, matrix in self.matrices.items():
            apply(self.views[key], matrix)
        self.matrices.clear()
        self.views.clear()
