"""Fused 1x1 expansion + depthwise conv: the kernel against NumPy, the fusion plan on ONNX graphs, and compile."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from sparseforge.codegen import fusion
from sparseforge.codegen.importer import _fused_activation, _match_activation
from tests.helpers import init, make_model, vinfo

F32 = onnx.TensorProto.FLOAT


# --------------------------------------------------------------------------------------------------- the kernel


def _cases():
    """(cin, c, h, w, k, stride, pads, threads, act1, act2, weight kind, batch, bias)"""
    return [
        (16, 96, 20, 20, 3, 1, (1, 1, 1, 1), 1, "relu6", "relu6", "csr", 1, True),
        (24, 144, 18, 18, 3, 2, (1, 1, 1, 1), 2, "relu6", "none", "csr", 1, True),
        (13, 21, 9, 11, 5, 1, (2, 2, 2, 2), 2, "hardswish", "silu", "csr", 2, False),
        (40, 240, 7, 7, 5, 2, (2, 2, 2, 2), 2, "silu", "hardswish", "bsr4", 1, True),
        (16, 64, 12, 30, 3, 1, (1, 1, 1, 1), 1, "relu", "sigmoid", "bsr8", 1, True),
        (16, 40, 11, 13, 3, 2, (0, 1, 1, 0), 2, "gelu", "tanh", "dense", 1, True),  # asymmetric pads, odd size
        (8, 24, 6, 9, 3, 1, (0, 0, 0, 0), 2, "relu6", "relu6", "csr", 3, True),  # no padding, batch > threads
        (8, 16, 5, 40, 3, 2, (1, 1, 1, 1), 2, "none", "none", "empty", 1, False),  # all-zero weight
    ]


def _weight(rng, kind, c, cin):
    from sparseforge.codegen.kernels.testing import block_sparse, unstructured

    if kind == "csr":
        return unstructured(rng, c, cin, 0.15, empty_rows=(0,)), None
    if kind == "bsr4":
        return block_sparse(rng, c, cin, 4, 1, 0.2), (4, 1)
    if kind == "bsr8":
        return block_sparse(rng, c, cin, 8, 1, 0.2), (8, 1)
    if kind == "dense":
        return rng.standard_normal((c, cin)).astype(np.float32), (4, 1)
    return np.zeros((c, cin), np.float32), None


@pytest.mark.tvm
def test_kernel_matches_numpy_reference() -> None:
    pytest.importorskip("tvm")
    from sparseforge.codegen.kernels import Runner, build, expand_depthwise_nchwc, make_target
    from sparseforge.codegen.kernels.testing import max_error

    rng = np.random.default_rng(0)
    built = []
    for i, (cin, c, h, w, k, s, pads, threads, act1, act2, kind, batch, bias) in enumerate(_cases()):
        weight, block = _weight(rng, kind, c, cin)
        dw = rng.standard_normal((c, 1, k, k)).astype(np.float32)
        tgt = make_target(threads=threads, lanes=8)
        kernel = expand_depthwise_nchwc(
            weight, dw, batch, h, w, strides=(s, s), pads=pads, block=block, target=tgt, name=f"ed_{i}",
            bias=rng.standard_normal(c).astype(np.float32) if bias else None, activation=act1,
            dw_bias=rng.standard_normal(c).astype(np.float32) if bias else None, dw_activation=act2)
        built.append((kernel, tgt, cin))
    for kernel, tgt, cin in built:
        lib = build(kernel, tgt)
        x = rng.standard_normal(kernel.in_shape).astype(np.float32)
        ref = kernel.reference(x)
        x[:, -1, :, :, cin % 8 or 8:] = np.nan  # input padding lanes: never read into a real output
        y = Runner(lib, kernel, x)()
        assert np.all(np.isfinite(y)), kernel.name
        assert y.shape == ref.shape == kernel.out_shape
        assert max_error(y, ref) < 1e-5, (kernel.name, max_error(y, ref))


@pytest.mark.tvm
def test_kernel_refuses_unsupported_geometry() -> None:
    pytest.importorskip("tvm")
    from sparseforge.codegen.kernels import expand_depthwise_nchwc

    w = np.ones((8, 4), np.float32)
    with pytest.raises(ValueError, match="geometry"):  # stride taller than the kernel: rows would be skipped
        expand_depthwise_nchwc(w, np.ones((8, 1, 1, 1), np.float32), 1, 8, 8, strides=(2, 2))
    with pytest.raises(ValueError, match="channels"):
        expand_depthwise_nchwc(w, np.ones((6, 1, 3, 3), np.float32), 1, 8, 8)
    with pytest.raises(ValueError, match="activation"):
        expand_depthwise_nchwc(w, np.ones((8, 1, 3, 3), np.float32), 1, 8, 8, dw_activation="swish2")


# --------------------------------------------------------------------------------------------------- the plan


def _block(*, dw_group=None, dw_attrs=None, act2="Clip", share_expansion=False, dw_output_is_graph_output=False,
           width=32):
    """x -> CsrConv1x1 -> Clip(0, 6) -> depthwise Conv -> act2 -> y (the sparse op's inputs are dummies: only the
    plan reads this graph)."""
    c = 16
    nodes = [helper.make_node("CsrConv1x1", ["x", "vals", "idx", "dims", "bias"], ["e"], name="expand", domain="ai.sparseforge"),
             helper.make_node("Clip", ["e", "lo", "hi"], ["e6"], name="expand_act")]
    attrs = dict(group=c if dw_group is None else dw_group, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    attrs.update(dw_attrs or {})
    if "auto_pad" in attrs:
        attrs.pop("pads")
    nodes.append(helper.make_node("Conv", ["e6", "dw_w", "dw_b"], ["d"], name="dw", **attrs))
    outputs = [vinfo("y", None)]
    if act2 == "Clip":
        nodes.append(helper.make_node("Clip", ["d", "lo", "hi"], ["y"], name="dw_act"))
    elif act2 == "SiLU":
        nodes += [helper.make_node("Sigmoid", ["d"], ["sg"], name="dw_sig"),
                  helper.make_node("Mul", ["d", "sg"], ["y"], name="dw_mul")]
    else:
        nodes.append(helper.make_node("Identity", ["d"], ["y"], name="dw_id"))
    if share_expansion:
        nodes.append(helper.make_node("Identity", ["e6"], ["e_copy"], name="other_user"))
        outputs.append(vinfo("e_copy", None))
    if dw_output_is_graph_output:
        outputs.append(vinfo("d", None))
    groups = attrs["group"]
    inits = [init("lo", np.float32(0)), init("hi", np.float32(6)),
             init("dw_w", np.ones((c, c // groups, 3, 3), np.float32)), init("dw_b", np.zeros(c, np.float32))]
    return make_model(nodes, [vinfo("x", [1, 8, width, width])], outputs, inits).graph


def _plan(graph):
    fused, absorbed = _fused_activation(graph)
    return fusion.plan_depthwise(graph, fused, absorbed, _match_activation)


def test_plan_finds_expansion_depthwise_and_activations() -> None:
    plan = _plan(_block())["expand"]
    assert (plan.node, plan.activation, plan.activation_nodes) == ("dw", "relu6", ("dw_act",))
    assert plan.strides == (1, 1) and plan.pads == (1, 1, 1, 1) and plan.weight.shape == (16, 1, 3, 3)
    silu = _plan(_block(act2="SiLU"))["expand"]
    assert (silu.activation, silu.activation_nodes, silu.output) == ("silu", ("dw_sig", "dw_mul"), "d")
    assert _plan(_block(act2=None))["expand"].activation == "none"


@pytest.mark.parametrize("variant", [
    dict(dw_group=1),  # a dense 3x3 conv, not depthwise
    dict(dw_attrs=dict(dilations=[2, 2])),
    dict(dw_attrs=dict(auto_pad="SAME_UPPER")),
    dict(share_expansion=True),  # the expanded tensor is read elsewhere too: it must exist
])
def test_plan_refuses_what_the_kernel_cannot_take(variant) -> None:
    assert _plan(_block(**variant)) == {}


def test_plan_keeps_a_graph_output_activation_free() -> None:
    plan = _plan(_block(dw_output_is_graph_output=True))["expand"]
    assert plan.activation == "none" and plan.activation_nodes == ()


def _dense_block(*, act1="Clip", conv_output_read_twice=False):
    """x -> Conv 1x1 -> act1 -> depthwise Conv -> Clip -> y (standard ONNX)."""
    c = 16
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["e"], name="expand")]
    outputs = [vinfo("y", None)]
    if act1 == "Clip":
        nodes.append(helper.make_node("Clip", ["e", "lo", "hi"], ["e6"], name="expand_act"))
    elif act1 == "SiLU":
        nodes += [helper.make_node("Sigmoid", ["e"], ["sg"], name="expand_sig"),
                  helper.make_node("Mul", ["e", "sg"], ["e6"], name="expand_mul")]
    else:
        nodes[0].output[0] = "e6"
    if conv_output_read_twice:
        nodes.append(helper.make_node("Identity", ["e"], ["e_copy"], name="other_user"))
        outputs.append(vinfo("e_copy", None))
    nodes += [helper.make_node("Conv", ["e6", "dw_w"], ["d"], name="dw", group=c, kernel_shape=[5, 5],
                               pads=[2, 2, 2, 2], strides=[2, 2]),
              helper.make_node("Clip", ["d", "lo", "hi"], ["y"], name="dw_act")]
    inits = [init("lo", np.float32(0)), init("hi", np.float32(6)), init("w1", np.ones((c, 8, 1, 1), np.float32)),
             init("b1", np.zeros(c, np.float32)), init("dw_w", np.ones((c, 1, 5, 5), np.float32))]
    return make_model(nodes, [vinfo("x", [1, 8, 32, 32])], outputs, inits).graph


def test_dense_expansion_plans() -> None:
    plans = fusion.plan_dense_expansions(_dense_block(), {}, _match_activation)
    plan = plans["expand"]
    assert (plan.activation, plan.activation_nodes, plan.output) == ("relu6", ("expand_act",), "e")
    assert plan.weight.shape == (16, 8) and plan.bias.shape == (16,)
    assert (plan.depthwise.node, plan.depthwise.strides, plan.depthwise.pads, plan.depthwise.bias) == (
        "dw", (2, 2), (2, 2, 2, 2), None)
    silu = fusion.plan_dense_expansions(_dense_block(act1="SiLU"), {}, _match_activation)["expand"]
    assert silu.activation == "silu" and silu.activation_nodes == ("expand_sig", "expand_mul")
    assert fusion.plan_dense_expansions(_dense_block(act1=None), {}, _match_activation)["expand"].activation == "none"
    assert fusion.plan_dense_expansions(_dense_block(conv_output_read_twice=True), {}, _match_activation) == {}
    # the depthwise conv itself is never taken for an expansion, and nodes already absorbed are not claimed again
    assert fusion.plan_dense_expansions(_dense_block(), {"dw_act": "x"}, _match_activation)["expand"].depthwise \
        .activation == "none"


def test_worthwhile_needs_wide_rows_3x3_and_cheap_activations() -> None:
    plan = _plan(_block())["expand"]
    assert fusion.worthwhile((1, 16, 56, 56), 8, plan, "relu6") and fusion.worthwhile((1, 16, 28, 28), 8, plan, "none")
    assert not fusion.worthwhile((1, 16, 14, 14), 8, plan, "relu6")
    assert not fusion.worthwhile((1, 16, 7, 7), 8, plan, "relu6")
    assert not fusion.worthwhile((1, 16, 28, 28), 16, plan, "relu6")
    assert not fusion.worthwhile((1, 16, 56, 56), 8, plan, "silu")  # compute bound: SiLU paid in full
    five = fusion.plan_dense_expansions(_dense_block(), {}, _match_activation)["expand"]
    assert not fusion.worthwhile((1, 8, 56, 56), 8, five.depthwise, "relu6")  # 5x5 measured no faster fused


# --------------------------------------------------------------------------------------------------- compile


def _inverted_residual(width: int, seed: int = 0, second_act: str = "hardswish") -> onnx.ModelProto:
    """Conv1x1 (90% zeros) -> Clip -> depthwise 3x3 -> Clip -> Conv1x1 (90% zeros) + x, then a stride-2 block with
    ``second_act`` (HardSwish or SiLU) after its depthwise conv: standard ONNX, as a PyTorch export would give."""
    rng = np.random.default_rng(seed)
    cin, c = 16, 96

    def sparse(n, k):
        return (rng.standard_normal((n, k, 1, 1)) * (rng.random((n, k, 1, 1)) < 0.1)).astype(np.float32)

    inits = [init("lo", np.float32(0)), init("hi", np.float32(6))]
    nodes = []
    for i, (stride, act) in enumerate(((1, "clip"), (2, second_act))):
        p = f"b{i}_"
        inits += [init(p + "w1", sparse(c, cin)), init(p + "b1", rng.standard_normal(c).astype(np.float32)),
                  init(p + "wd", rng.standard_normal((c, 1, 3, 3)).astype(np.float32)),
                  init(p + "bd", rng.standard_normal(c).astype(np.float32)), init(p + "w2", sparse(cin, c))]
        x = "x" if i == 0 else "y0"
        nodes += [helper.make_node("Conv", [x, p + "w1", p + "b1"], [p + "e"], name=p + "expand"),
                  helper.make_node("Clip", [p + "e", "lo", "hi"], [p + "e6"], name=p + "expand_act"),
                  helper.make_node("Conv", [p + "e6", p + "wd", p + "bd"], [p + "d"], name=p + "dw", group=c,
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride])]
        if act == "clip":
            nodes.append(helper.make_node("Clip", [p + "d", "lo", "hi"], [p + "d6"], name=p + "dw_act"))
        elif act == "hardswish":
            nodes.append(helper.make_node("HardSwish", [p + "d"], [p + "d6"], name=p + "dw_act"))
        else:
            nodes += [helper.make_node("Sigmoid", [p + "d"], [p + "sg"], name=p + "dw_sig"),
                      helper.make_node("Mul", [p + "d", p + "sg"], [p + "d6"], name=p + "dw_mul")]
        nodes.append(helper.make_node("Conv", [p + "d6", p + "w2"], [p + "p"], name=p + "project"))
        if stride == 1:
            nodes.append(helper.make_node("Add", [p + "p", x], [f"y{i}"], name=p + "residual"))
        else:
            nodes.append(helper.make_node("Identity", [p + "p"], ["y"], name=p + "out"))
    out = (width + 2 - 3) // 2 + 1
    return make_model(nodes, [vinfo("x", [1, cin, width, width])], [vinfo("y", [1, cin, out, out])], inits)


@pytest.mark.tvm
@pytest.mark.parametrize("width,fuse,dense,second_act,expect_fused", [
    (32, True, False, "hardswish", 2), (32, False, False, "hardswish", 0), (12, True, False, "hardswish", 0),
    (32, True, True, "hardswish", 2), (32, True, True, "silu", 1)])
def test_compile_fuses_and_matches_onnxruntime(tmp_path, width, fuse, dense, second_act, expect_fused) -> None:
    pytest.importorskip("tvm")
    from sparseforge.codegen.cost.rules import RuleCostModel
    from sparseforge.driver.compile import compile_model
    from sparseforge.driver.verify import verify_artifact

    model = _inverted_residual(width, second_act=second_act)
    out = tmp_path / "artifact"
    result = compile_model(model, out, threads=2, cost_model=RuleCostModel.for_target("x86"), fuse=fuse,
                           dense=dense)
    fused = [k for k in result.manifest["kernels"] if k["info"].get("fused")]
    assert len(fused) == expect_fused, result.manifest["kernels"]
    if expect_fused == 2:
        assert {k["info"]["fused"] for k in fused} == {"b0_dw", "b1_dw"}
        assert {k["info"]["fused_activation"] for k in fused} == {"relu6", "hardswish"}
    if expect_fused:
        assert {k["fmt"] for k in fused} == ({"dense"} if dense else {"csr"})
    report = verify_artifact(out, model, rtol=1e-4)
    assert report.ran and report.ok, report.to_dict()


def test_unnamed_and_repeated_node_names_are_made_unique() -> None:
    from sparseforge.codegen.importer import with_unique_node_names

    model = _inverted_residual(16)
    assert with_unique_node_names(model) is model  # already unique: no copy
    names = [n.name for n in model.graph.node]
    model.graph.node[0].name = ""
    model.graph.node[3].name = model.graph.node[2].name
    fixed = with_unique_node_names(model)
    new = [n.name for n in fixed.graph.node]
    assert all(new) and len(set(new)) == len(new)
    assert new[2] == names[2] and new[4:] == names[4:]  # first occurrences keep their names
    assert model.graph.node[0].name == ""  # the input is not changed


@pytest.mark.tvm
def test_compile_fuses_unnamed_nodes_correctly(tmp_path) -> None:
    """Nodes without names (valid ONNX) are fused and absorbed one by one, never all unnamed nodes at once."""
    pytest.importorskip("tvm")
    from sparseforge.driver.compile import compile_model
    from sparseforge.driver.verify import verify_artifact

    model = _inverted_residual(32)
    for node in model.graph.node:
        node.name = ""
    out = tmp_path / "artifact"
    result = compile_model(model, out, threads=1, dense=True)
    assert sum(1 for k in result.manifest["kernels"] if k["info"].get("fused")) == 2
    report = verify_artifact(out, model, rtol=1e-4)
    assert report.ran and report.ok, report.to_dict()
