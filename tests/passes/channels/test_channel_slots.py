"""Channel slots: union-find components, sources/sinks and pins of a small conv chain."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common
from helpers import init, make_model, randn, to_ir, vinfo
from onnx import helper

from sparseforge.passes.channels.graph import ChannelGraph
from sparseforge.passes.channels.slots import UnionFind


def chain(act: str = "Relu", bias1: np.ndarray | None = None, pads2=(0, 0, 0, 0)):
    """x -> conv1 (4 out, rows 1 and 3 zero) -> act -> conv2 (1x1) -> y."""
    w1 = randn(4, 2, 3, 3, seed=1)
    w1[[1, 3]] = 0
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node(act, ["h"], ["a"], name="act"),
             helper.make_node("Conv", ["a", "w2"], ["y"], name="conv2", pads=list(pads2))]
    b1 = np.array([0.5, -1.0, 0.25, 0.0], np.float32) if bias1 is None else bias1
    out_hw = 4 + pads2[0] + pads2[2]
    model = to_ir(make_model(nodes, [vinfo("x", [1, 2, 4, 4])], [vinfo("y", [1, 3, out_hw, out_hw])],
                             [init("w1", w1), init("b1", b1), init("w2", randn(3, 4, 1, 1, seed=2))]))
    ir.passes.common.ShapeInferencePass()(model)  # channel counts come from static shapes
    return model


def test_union_find_merges_to_the_smallest_root() -> None:
    uf = UnionFind()
    a, b = uf.make(3), uf.make(2)
    assert list(a) == [0, 1, 2] and list(b) == [3, 4]
    uf.union(4, 1)
    uf.union(2, 4)
    assert uf.find(2) == uf.find(4) == uf.find(1) == 1
    assert uf.find(0) == 0 and uf.find(3) == 3


def test_elementwise_op_shares_the_producers_slots() -> None:
    model = chain()
    slots = ChannelGraph(model).slots
    values = {v.name: v for v in slots.tensors}
    h, a = slots.tensors[values["h"]], slots.tensors[values["a"]]
    assert [slots.component(s) for s in h.slots] == [slots.component(s) for s in a.slots]
    assert len({slots.component(s) for s in h.slots}) == 4
    assert [view.name for view, _ in slots.sources] == ["conv1", "conv2"]
    assert {(s.view.name, s.tensor.name) for s in slots.sinks} == {("conv1", "x"), ("conv2", "a")}
    assert [p.index for p in slots.params] == []


def test_graph_inputs_and_outputs_are_pinned() -> None:
    slots = ChannelGraph(chain()).slots
    reasons = slots.pin_reasons()
    values = {v.name: v for v in slots.tensors}
    x_root = slots.component(slots.tensors[values["x"]].slots[0])
    y_root = slots.component(slots.tensors[values["y"]].slots[0])
    assert any("graph input 'x'" in r for r in reasons[x_root])
    assert any("'y' is a graph output" in r for r in reasons[y_root])
    h_root = slots.component(slots.tensors[values["h"]].slots[1])
    assert h_root not in reasons


def test_an_op_that_mixes_channels_pins_its_input() -> None:
    slots = ChannelGraph(chain(act="Softmax")).slots
    values = {v.name: v for v in slots.tensors}
    root = slots.component(slots.tensors[values["h"]].slots[1])
    assert any("feeds Softmax 'act'" in r for r in slots.pin_reasons()[root])
