"""plan_removal: dead channels go unless pinned, used while not constant, or folded across zero padding."""

from __future__ import annotations

import numpy as np
from test_channel_slots import chain

from sparseforge.passes.channels.graph import ChannelGraph
from sparseforge.passes.channels.plan import plan_removal


def _h_roots(graph: ChannelGraph) -> list[int]:
    t = next(t for v, t in graph.slots.tensors.items() if v.name == "h")
    return [graph.slots.component(s) for s in t.slots]


def test_dead_constant_channels_are_removed_and_live_ones_kept() -> None:
    graph = ChannelGraph(chain())
    plan = plan_removal(graph)
    roots = _h_roots(graph)
    assert roots[1] in plan.removed and roots[3] in plan.removed
    assert roots[0] not in plan.removed
    assert any("'conv2' uses it (reading '" in r and "is not constant" in r for r in plan.blocked[roots[0]])


def test_a_nonzero_constant_is_not_folded_across_zero_padding() -> None:
    bias = np.array([0.5, 2.0, 0.25, 0.0], np.float32)  # relu(2) = 2 reaches a padded conv
    graph = ChannelGraph(chain(bias1=bias, pads2=(1, 1, 1, 1)))
    plan = plan_removal(graph)
    roots = _h_roots(graph)
    assert roots[3] in plan.removed  # constant 0 is fine with zero padding
    assert roots[1] not in plan.removed
    assert "cannot be folded into 'conv2'" in plan.blocked[roots[1]][0]


def test_a_tensor_never_loses_all_its_channels() -> None:
    graph = ChannelGraph(chain(bias1=np.zeros(4, np.float32), act="Relu"))
    for t in graph.slots.tensors.values():
        assert not all(graph.slots.component(s) in plan_removal(graph).removed for s in t.slots)


def test_each_weight_is_decoded_once(monkeypatch) -> None:
    """plan_removal read ``view.matrix()`` once per channel (``dict.setdefault`` evaluates its default): a
    4096-wide layer decoded its 64 MB weight 4096 times and ShrinkChannels took minutes."""
    from sparseforge.ir import weights

    calls = []
    original = weights.WeightView.matrix

    def counting(self):
        calls.append(self.node.name)
        return original(self)

    monkeypatch.setattr(weights.WeightView, "matrix", counting)
    graph = ChannelGraph(chain())
    calls.clear()
    plan_removal(graph)
    assert len(calls) == len(set(calls)), calls
