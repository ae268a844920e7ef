"""Which channel components to remove, and why each other one is kept.

A component is removed when it is not pinned and every sink either ignores it (all-zero columns) or sees a known
constant it can fold into its bias (no zero padding in between). A tensor is never emptied: if all its components
would go, the one of its first channel stays.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from sparseforge.passes.channels.graph import ChannelGraph


@dataclasses.dataclass
class RemovalPlan:
    removed: set[int]  # component roots
    blocked: dict[int, list[str]]  # component root -> reasons it is kept


def plan_removal(graph: ChannelGraph) -> RemovalPlan:
    """Decide which channel components to remove; others get the reasons they are kept."""
    slots, consts = graph.slots, graph.consts
    blocked: dict[int, list[str]] = defaultdict(list)
    for root, reasons in slots.pin_reasons().items():
        blocked[root].extend(reasons)
    matrices: dict[int, np.ndarray] = {}
    for sink in slots.sinks:
        t = slots.tensors.get(sink.tensor)
        if t is None:
            continue
        root = slots.component(t.slots[sink.channel])
        mat = matrices.get(id(sink.view.node))
        if mat is None:  # once per layer (setdefault would decode the weight again for every channel)
            mat = matrices[id(sink.view.node)] = sink.view.matrix()
        if not (mat[:, sink.columns] != 0).any():
            continue  # dead columns: the sink ignores this channel
        value = consts[sink.tensor][sink.channel]
        if np.isnan(value):
            lost = consts.lost.get(sink.tensor)
            where = f" (constant until {lost})" if lost else ""
            # name the tensor the sink reads: through a residual Add the channel reaches layers that do not
            # consume the pruned layer's output directly
            blocked[root].append(f"'{sink.view.name}' uses it (reading '{t.value.name}') and it is not "
                                 f"constant{where}")
        elif value != 0 and not sink.foldable:
            blocked[root].append(f"its constant value {value:g} cannot be folded into '{sink.view.name}' "
                                 "(zero padding sees 0 at the borders)")
    roots = {slots.component(s) for t in slots.tensors.values() for s in t.slots}
    removed = {r for r in roots if r not in blocked}
    # never empty a tensor: keep the component of its first channel
    changed = True
    while changed:
        changed = False
        for t in slots.tensors.values():
            comps = [slots.component(s) for s in t.slots]
            if comps and all(c in removed for c in comps):
                removed.discard(comps[0])
                blocked[comps[0]].append(f"removing it would leave '{t.value.name}' without channels")
                changed = True
    return RemovalPlan(removed, dict(blocked))
