"""ShrinkChannels: exact channel removal through every supported op, checked in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from helpers import assert_equivalent, init, make_model, randn, to_ir, vinfo
from onnx import helper

from sparseforge.ir.weights import constant_array
from sparseforge.passes.rewrites.shrink_channels import ShrinkChannelsPass


def shrink(proto):
    model = to_ir(proto)
    result = ShrinkChannelsPass()(model)
    assert_equivalent(proto, model)
    return model, result.report


def weight(model: ir.Model, node_name: str, index: int = 1) -> np.ndarray:
    node = next(n for n in model.graph if n.name == node_name)
    return constant_array(node.inputs[index])


def node_named(model: ir.Model, name: str) -> ir.Node:
    return next(n for n in model.graph if n.name == name)


def conv_chain(bias1: np.ndarray, act: str = "Relu", pads2=(0, 0, 0, 0), k2: int = 1, dead=(1, 4)):
    """x -> Conv1(8 out, dead rows) -> act -> Conv2 (k2 x k2) -> y."""
    w1 = randn(8, 3, 3, 3, seed=1)
    w1[list(dead)] = 0
    w2 = randn(5, 8, k2, k2, seed=2)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node(act, ["h"], ["a"], name="act"),
             helper.make_node("Conv", ["a", "w2", "b2"], ["y"], name="conv2", pads=list(pads2))]
    out_hw = 6 - k2 + 1 + pads2[0] + pads2[2]
    return make_model(nodes, [vinfo("x", [1, 3, 6, 6])], [vinfo("y", [1, 5, out_hw, out_hw])],
                      [init("w1", w1), init("b1", bias1), init("w2", w2), init("b2", randn(5, seed=3))])


def test_dead_channels_with_zero_output_are_removed() -> None:
    b1 = randn(8, seed=4)
    b1[[1, 4]] = 0.0
    model, report = shrink(conv_chain(b1))
    assert weight(model, "conv1").shape == (6, 3, 3, 3)
    assert weight(model, "conv2").shape == (5, 6, 1, 1)
    assert weight(model, "conv1", 2).shape == (6,)
    assert report.counts["output-channels-removed"] == 2


def test_negative_bias_under_relu_is_zero_too() -> None:
    b1 = randn(8, seed=4)
    b1[[1, 4]] = -0.5  # relu(-0.5) = 0
    model, _ = shrink(conv_chain(b1))
    assert weight(model, "conv1").shape[0] == 6


def test_nonzero_constant_is_folded_into_the_next_bias() -> None:
    b1 = randn(8, seed=4)
    b1[[1, 4]] = [0.7, 2.0]  # sigmoid(b) != 0: folded into conv2's bias
    model, report = shrink(conv_chain(b1, act="Sigmoid"))
    assert weight(model, "conv2").shape == (5, 6, 1, 1)
    assert any("folded" in d.message for d in report.diagnostics)


def test_unpadded_kxk_consumer_folds_but_padded_one_does_not() -> None:
    b1 = randn(8, seed=4)
    b1[[1, 4]] = 0.5
    model, _ = shrink(conv_chain(b1, k2=3, pads2=(0, 0, 0, 0)))
    assert weight(model, "conv2").shape == (5, 6, 3, 3)
    model, report = shrink(conv_chain(b1, k2=3, pads2=(1, 1, 1, 1)))
    assert weight(model, "conv2").shape == (5, 8, 3, 3)
    kept = [d for d in report.diagnostics if d.code == "kept.dead-output"]
    assert kept and "zero padding" in kept[0].message


def mlp(hidden_dead=(0, 3, 7), bias_dead_value=0.0, act="Relu", use_gemm=True):
    w1 = randn(10, 6, seed=5)  # Gemm transB=1 layout [out, in]
    w1[list(hidden_dead)] = 0
    b1 = randn(10, seed=6)
    b1[list(hidden_dead)] = bias_dead_value
    w2 = randn(4, 10, seed=7)
    if use_gemm:
        nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
                 helper.make_node(act, ["h"], ["a"], name="act"),
                 helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1)]
        inits = [init("w1", w1), init("b1", b1), init("w2", w2)]
    else:  # MatMul + Add, the PyTorch Linear export on 3-D inputs
        nodes = [helper.make_node("MatMul", ["x", "w1t"], ["m"], name="fc1"),
                 helper.make_node("Add", ["m", "b1"], ["h"], name="bias1"),
                 helper.make_node(act, ["h"], ["a"], name="act"),
                 helper.make_node("MatMul", ["a", "w2t"], ["y"], name="fc2")]
        inits = [init("w1t", w1.T.copy()), init("b1", b1), init("w2t", w2.T.copy())]
    shape_in = [2, 6] if use_gemm else [1, 3, 6]
    shape_out = [2, 4] if use_gemm else [1, 3, 4]
    return make_model(nodes, [vinfo("x", shape_in)], [vinfo("y", shape_out)], inits)


@pytest.mark.parametrize("use_gemm", [True, False])
@pytest.mark.parametrize("act,value", [("Relu", 0.0), ("Relu", 1.5), ("Gelu", 0.25), ("Tanh", -0.3)])
def test_mlp_neurons(use_gemm: bool, act: str, value: float) -> None:
    proto = mlp(bias_dead_value=value, act=act, use_gemm=use_gemm)
    proto.opset_import[0].version = 20  # Gelu
    model, _ = shrink(proto)
    w2 = weight(model, "fc2")
    assert w2.shape == ((4, 7) if use_gemm else (7, 4))
    if value != 0.0 and not use_gemm:  # MatMul has no bias: a new Add carries the folded constant
        assert any(n.op_type == "Add" and n.name.startswith("fc2") for n in model.graph)


def test_dead_input_columns_remove_the_producer_rows() -> None:
    proto = mlp(hidden_dead=())
    w2 = proto.graph.initializer[2]
    array = np.frombuffer(w2.raw_data, np.float32).reshape(4, 10).copy()
    array[:, [2, 5]] = 0  # fc2 ignores neurons 2 and 5; fc1 still computes them
    proto.graph.initializer[2].CopyFrom(init("w2", array))
    model, report = shrink(proto)
    assert weight(model, "fc1").shape == (8, 6)
    assert weight(model, "fc2").shape == (4, 8)


def test_producer_feeding_a_graph_output_is_kept() -> None:
    proto = mlp()
    proto.graph.output.append(vinfo("a", [2, 10]))
    model, report = shrink(proto)
    assert weight(model, "fc1").shape == (10, 6)
    kept = [d for d in report.diagnostics if d.code == "kept.dead-output"]
    assert kept and "graph output" in kept[0].message


def residual_block(dead_a=(2,), dead_b=(2,)):
    """x -> convA, convB (1x1, 6 out each) -> Add -> Relu -> conv_out (1x1)."""
    wa, wb = randn(6, 4, 1, 1, seed=8), randn(6, 4, 1, 1, seed=9)
    wa[list(dead_a)] = 0
    wb[list(dead_b)] = 0
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="convA"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="convB"),
             helper.make_node("Add", ["a", "b"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wo"], ["y"], name="conv_out")]
    return make_model(nodes, [vinfo("x", [1, 4, 5, 5])], [vinfo("y", [1, 3, 5, 5])],
                      [init("wa", wa), init("wb", wb), init("wo", randn(3, 6, 1, 1, seed=10))])


def test_residual_add_removes_only_channels_dead_on_every_branch() -> None:
    model, _ = shrink(residual_block(dead_a=(2, 4), dead_b=(2,)))
    assert weight(model, "convA").shape[0] == 5
    assert weight(model, "convB").shape[0] == 5
    assert weight(model, "conv_out").shape == (3, 5, 1, 1)


def test_residual_add_with_graph_input_branch_is_kept() -> None:
    wa = randn(4, 4, 1, 1, seed=8)
    wa[1] = 0
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="convA"),
             helper.make_node("Add", ["a", "x"], ["s"], name="residual"),
             helper.make_node("Conv", ["s", "wo"], ["y"], name="conv_out")]
    proto = make_model(nodes, [vinfo("x", [1, 4, 5, 5])], [vinfo("y", [1, 3, 5, 5])],
                       [init("wa", wa), init("wo", randn(3, 4, 1, 1, seed=10))])
    model, report = shrink(proto)
    assert weight(model, "convA").shape[0] == 4
    assert any("graph input 'x'" in d.message for d in report.diagnostics)


def test_concat_carries_channel_offsets() -> None:
    wa, wb = randn(3, 2, 1, 1, seed=11), randn(4, 2, 1, 1, seed=12)
    wa[0] = 0
    wb[[1, 3]] = 0
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="convA"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="convB"),
             helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wo"], ["y"], name="conv_out")]
    proto = make_model(nodes, [vinfo("x", [1, 2, 4, 4])], [vinfo("y", [1, 5, 4, 4])],
                       [init("wa", wa), init("wb", wb), init("wo", randn(5, 7, 1, 1, seed=13))])
    model, _ = shrink(proto)
    assert weight(model, "convA").shape[0] == 2
    assert weight(model, "convB").shape[0] == 2
    wo = weight(model, "conv_out")
    original = randn(5, 7, 1, 1, seed=13)
    np.testing.assert_array_equal(wo, original[:, [1, 2, 3, 5]])


def test_unfolded_batchnorm_is_sliced() -> None:
    wa = randn(6, 3, 1, 1, seed=14)
    wa[[0, 5]] = 0
    bn = [init("scale", randn(6, seed=15)), init("shift", randn(6, seed=16)),
          init("mean", randn(6, seed=17)), init("var", np.abs(randn(6, seed=18)) + 0.5)]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="convA"),
             helper.make_node("Add", ["a", "a"], ["s"], name="double"),
             helper.make_node("BatchNormalization", ["s", "scale", "shift", "mean", "var"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wo"], ["y"], name="conv_out")]
    proto = make_model(nodes, [vinfo("x", [1, 3, 4, 4])], [vinfo("y", [1, 2, 4, 4])],
                       [init("wa", wa), init("wo", randn(2, 6, 1, 1, seed=19)), *bn])
    model, _ = shrink(proto)
    assert weight(model, "convA").shape[0] == 4
    assert constant_array(node_named(model, "bn").inputs[1]).shape == (4,)


@pytest.mark.parametrize("flatten_op", ["Flatten", "Reshape"])
def test_flatten_into_gemm_removes_spatial_blocks(flatten_op: str) -> None:
    wc = randn(4, 2, 3, 3, seed=20)
    wc[2] = 0
    if flatten_op == "Flatten":
        flat = helper.make_node("Flatten", ["r"], ["f"], name="flat", axis=1)
        extra = []
    else:
        flat = helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat")
        extra = [init("shape", np.array([1, 4 * 9], np.int64))]
    nodes = [helper.make_node("Conv", ["x", "wc"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"), flat,
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    proto = make_model(nodes, [vinfo("x", [1, 2, 5, 5])], [vinfo("y", [1, 7])],
                       [init("wc", wc), init("wf", randn(7, 36, seed=21)), init("bf", randn(7, seed=22)), *extra])
    model, _ = shrink(proto)
    assert weight(model, "conv").shape[0] == 3
    assert weight(model, "fc").shape == (7, 27)


def test_depthwise_passes_zero_channels_and_blocks_nonzero_ones() -> None:
    """MobileNet inverted residual: expand 1x1 -> Relu -> depthwise 3x3 (padded) -> project 1x1."""

    def block(bias_value: float):
        we = randn(6, 3, 1, 1, seed=23)
        we[[1, 2]] = 0
        be = randn(6, seed=24)
        be[[1, 2]] = bias_value
        nodes = [helper.make_node("Conv", ["x", "we", "be"], ["e"], name="expand"),
                 helper.make_node("Relu", ["e"], ["r"], name="relu"),
                 helper.make_node("Conv", ["r", "wd", "bd"], ["d"], name="dw", group=6, pads=[1, 1, 1, 1]),
                 helper.make_node("Clip", ["d", "lo", "hi"], ["c"], name="relu6"),
                 helper.make_node("Conv", ["c", "wp"], ["y"], name="project")]
        return make_model(nodes, [vinfo("x", [1, 3, 5, 5])], [vinfo("y", [1, 4, 5, 5])],
                          [init("we", we), init("be", be), init("wd", randn(6, 1, 3, 3, seed=25)),
                           init("bd", randn(6, seed=26)), init("wp", randn(4, 6, 1, 1, seed=27)),
                           init("lo", np.array(0, np.float32)), init("hi", np.array(6, np.float32))])

    model, _ = shrink(block(0.0))  # relu(0) = 0 -> the padded depthwise outputs its constant bias
    assert weight(model, "expand").shape[0] == 4
    assert weight(model, "dw").shape == (4, 1, 3, 3)
    assert node_named(model, "dw").attributes["group"].value == 4
    assert weight(model, "project").shape == (4, 4, 1, 1)
    model, report = shrink(block(1.0))  # relu(1) = 1 is not constant after zero padding
    assert weight(model, "expand").shape[0] == 6
    assert any("constant until Conv 'dw'" in d.message for d in report.diagnostics)


def test_a_tensor_never_loses_all_channels() -> None:
    w1 = np.zeros((3, 2), np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
             helper.make_node("Gemm", ["h", "w2"], ["y"], name="fc2", transB=1)]
    proto = make_model(nodes, [vinfo("x", [1, 2])], [vinfo("y", [1, 2])],
                       [init("w1", w1), init("w2", randn(2, 3, seed=28))])
    model, _ = shrink(proto)
    assert weight(model, "fc1").shape == (1, 2)


def test_no_dead_channels_means_no_change() -> None:
    model = to_ir(residual_block(dead_a=(), dead_b=()))
    result = ShrinkChannelsPass()(model)
    assert not result.modified


def test_shared_weight_is_copied_not_mutated() -> None:
    w1 = randn(4, 3, seed=29)
    w1[1] = 0
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
             helper.make_node("Gemm", ["h", "w2"], ["y"], name="fc2", transB=1),
             helper.make_node("Gemm", ["x", "w1"], ["z"], name="fc_side", transB=1)]
    proto = make_model(nodes, [vinfo("x", [1, 3])], [vinfo("y", [1, 2]), vinfo("z", [1, 4])],
                       [init("w1", w1), init("w2", randn(2, 4, seed=30))])
    model, _ = shrink(proto)
    assert weight(model, "fc1").shape == (3, 3)
    assert weight(model, "fc_side").shape == (4, 3)  # its output is a graph output: untouched


def test_weights_are_decoded_a_bounded_number_of_times(monkeypatch) -> None:
    """Per-channel loops decoded the whole weight once per channel (4096 decodes of a 64 MB weight: minutes).
    With 64 channels, each layer is decoded a few times per round, never once per channel."""
    from collections import Counter

    import numpy as np
    from helpers import init, make_model, to_ir, vinfo
    from onnx import helper

    from sparseforge.ir import weights
    from sparseforge.passes.rewrites.shrink_channels import ShrinkChannelsPass

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, 64)).astype(np.float32)
    w1[:, ::2] = 0  # 32 dead output channels (MatMul [K, N]: columns are outputs)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    model = to_ir(make_model(nodes, [vinfo("x", [1, 64])], [vinfo("y", [1, 8])],
                             [init("w1", w1), init("w2", rng.standard_normal((64, 8)).astype(np.float32))]))
    calls: Counter[str] = Counter()
    original = weights.WeightView.matrix

    def counting(self):
        calls[self.node.name] += 1
        return original(self)

    monkeypatch.setattr(weights.WeightView, "matrix", counting)
    ShrinkChannelsPass()(model)
    assert calls and max(calls.values()) <= 16, calls
