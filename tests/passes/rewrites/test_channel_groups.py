"""Channel-group pruning: coupled channels (residual Add, depthwise conv) are pruned together, and ShrinkChannels
then removes every pruned channel exactly."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from helpers import assert_equivalent, init, make_model, to_ir, vinfo
from onnx import helper

from sparseforge.ir.weights import weight_views
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import canonicalize
from sparseforge.passes.rewrites.prune import PruneConfig, PrunePass
from sparseforge.passes.rewrites.shrink_channels import ShrinkChannelsPass


def _residual_net():
    """stem 3x3 (3->8) -> relu -> [1x1 expand 8->16, relu, depthwise 3x3, relu, 1x1 project 16->8] + residual
    -> 1x1 head 8->4 (the graph output)."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.5

    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="r0"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="expand"),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "wd", "bd"], ["cd"], name="dw", pads=[1, 1, 1, 1], group=16),
             helper.make_node("Relu", ["cd"], ["rd"], name="rd"),
             helper.make_node("Conv", ["rd", "w2", "b2"], ["c2"], name="project"),
             helper.make_node("Add", ["r0", "c2"], ["s"], name="residual"),
             helper.make_node("Conv", ["s", "w3", "b3"], ["y"], name="head")]
    inits = [init("w0", w(8, 3, 3, 3)), init("b0", w(8)), init("w1", w(16, 8, 1, 1)), init("b1", w(16)),
             init("wd", w(16, 1, 3, 3)), init("bd", w(16)), init("w2", w(8, 16, 1, 1)), init("b2", w(8)),
             init("w3", w(4, 8, 1, 1)), init("b3", w(4))]
    return make_model(nodes, [vinfo("x", [1, 3, 6, 6])], [vinfo("y", [1, 4, 6, 6])], inits)


def _nonzeros(model: ir.Model) -> int:
    return sum(int(np.count_nonzero(v.matrix())) for v in weight_views(model.graph))


def _parameters(model: ir.Model) -> int:
    return sum(int(np.prod(v.const_value.shape)) for v in model.graph.initializers.values()
               if v.const_value is not None)


def test_groups_are_pruned_together_and_export_removes_them() -> None:
    model = to_ir(_residual_net())
    Pipeline(canonicalize())(model)
    params0, nz0 = _parameters(model), _nonzeros(model)
    result = Pipeline([PrunePass(PruneConfig("group", sparsity=0.5))])(model)
    report = result.report("Prune")
    assert report.details["groups"] == 8 + 4  # half the expanded channels, half the residual stream
    pruned = ir.from_proto(ir.to_proto(model))
    zeroed = nz0 - _nonzeros(model)
    Pipeline([ShrinkChannelsPass()])(model)
    removed = params0 - _parameters(model)
    assert removed >= 0.95 * zeroed  # the target: export removes what was pruned
    assert_equivalent(pruned, model)  # and exactly: the shrunk model computes what the pruned one did
    shapes = {v.name: tuple(v.stored().shape) for v in weight_views(model.graph)}
    assert shapes["expand"][0] == 8 and shapes["stem"][0] == 4 and shapes["project"][0] == 4
    assert shapes["head"] == (4, 4, 1, 1)  # the graph output keeps its 4 channels


def test_graph_outputs_and_inputs_are_never_pruned() -> None:
    model = to_ir(_residual_net())
    Pipeline(canonicalize())(model)
    Pipeline([PrunePass(PruneConfig("group", sparsity=0.9))])(model)
    head = next(v for v in weight_views(model.graph) if v.name == "head")
    assert np.count_nonzero(head.matrix(), axis=1).all()  # its rows make the graph output: pinned


def test_concatenated_branches_are_pruned_per_channel_and_removed() -> None:
    """Two branches concatenated: each concatenated channel is its branch's channel; pruned ones disappear from
    the branch, the Concat and the consumer's columns."""
    rng = np.random.default_rng(1)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="branch_a", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "wb", "bb"], ["b"], name="branch_b"),
             helper.make_node("Relu", ["a"], ["ra"], name="ra"),
             helper.make_node("Relu", ["b"], ["rb"], name="rb"),
             helper.make_node("Concat", ["ra", "rb"], ["cat"], name="cat", axis=1),
             helper.make_node("Conv", ["cat", "wc", "bc"], ["y"], name="merge")]
    inits = [init("wa", w(6, 3, 3, 3)), init("ba", w(6)), init("wb", w(10, 3, 1, 1)), init("bb", w(10)),
             init("wc", w(5, 16, 1, 1)), init("bc", w(5))]
    model = to_ir(make_model(nodes, [vinfo("x", [1, 3, 5, 5])], [vinfo("y", [1, 5, 5, 5])], inits))
    Pipeline(canonicalize())(model)
    result = Pipeline([PrunePass(PruneConfig("group", sparsity=0.5))])(model)
    assert result.report("Prune").details["groups"] == 3 + 5
    pruned = ir.from_proto(ir.to_proto(model))
    Pipeline([ShrinkChannelsPass()])(model)
    assert_equivalent(pruned, model)
    shapes = {v.name: tuple(v.stored().shape) for v in weight_views(model.graph)}
    assert shapes["branch_a"][0] == 3 and shapes["branch_b"][0] == 5 and shapes["merge"] == (5, 8, 1, 1)


def test_skipped_layers_are_not_changed() -> None:
    model = to_ir(_residual_net())
    Pipeline(canonicalize())(model)
    before = {v.name: v.matrix().copy() for v in weight_views(model.graph)}
    Pipeline([PrunePass(PruneConfig("group", sparsity=0.5, skip=("expand",)))])(model)
    after = {v.name: v.matrix() for v in weight_views(model.graph)}
    np.testing.assert_array_equal(after["expand"], before["expand"])
    assert not np.array_equal(after["stem"], before["stem"])  # the residual stream is still pruned
