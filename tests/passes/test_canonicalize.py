"""Canonicalization: constant folding, BatchNorm folding (names kept), Gemm alpha/beta normalization."""

from __future__ import annotations

import numpy as np
from helpers import assert_equivalent, init, make_model, randn, to_ir, vinfo
from onnx import helper

from sparseforge.ir.weights import constant_array
from sparseforge.passes.canonicalize import FoldBatchNormPass, NormalizeGemmPass, OptimizePass
from sparseforge.passes.infra import Pipeline
from sparseforge.passes.pipelines import canonicalize


def conv_bn_proto():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    return make_model(nodes, [vinfo("x", [1, 3, 6, 6])], [vinfo("y", [1, 4, 6, 6])],
                      [init("w", randn(4, 3, 3, 3)), init("b", randn(4, seed=1)), init("s", randn(4, seed=2)),
                       init("t", randn(4, seed=3)), init("m", randn(4, seed=4)),
                       init("v", np.abs(randn(4, seed=5)) + 0.1)])


def test_batchnorm_folds_into_conv_keeping_its_name() -> None:
    proto = conv_bn_proto()
    model = to_ir(proto)
    result = FoldBatchNormPass()(model)
    assert [n.op_type for n in model.graph] == ["Conv", "Relu"]
    assert next(iter(model.graph)).name == "conv"
    assert result.report.counts["folded-batchnorm"] == 1
    assert_equivalent(proto, model)


def test_full_canonicalization_keeps_names_and_numerics() -> None:
    proto = conv_bn_proto()
    model = to_ir(proto)
    result = Pipeline(canonicalize())(model)
    assert [n.name for n in model.graph if n.op_type == "Conv"] == ["conv"]
    assert "Optimize" in model.metadata_props["pkg.sparseforge.pipeline"]
    assert [r.pass_name for r in result.reports][0] == "CheckWeights"
    assert_equivalent(proto, model)


def test_gemm_alpha_beta_are_folded() -> None:
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="g", alpha=0.5, beta=2.0, transB=1)
    proto = make_model([node], [vinfo("x", [2, 3])], [vinfo("y", [2, 4])], [init("w", randn(4, 3)),
                                                                           init("c", randn(4, seed=1))])
    model = to_ir(proto)
    NormalizeGemmPass()(model)
    gemm = next(iter(model.graph))
    assert "alpha" not in gemm.attributes and "beta" not in gemm.attributes
    np.testing.assert_allclose(constant_array(gemm.inputs[1]), randn(4, 3) * 0.5)
    assert_equivalent(proto, model)


def test_transposed_weight_is_folded_to_a_constant() -> None:
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wt"], ["y"], name="mm")]
    proto = make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", [2, 4])], [init("w", randn(4, 3))])
    model = to_ir(proto)
    OptimizePass()(model)
    assert [n.op_type for n in model.graph] == ["MatMul"]
    assert constant_array(next(iter(model.graph)).inputs[1]).shape == (3, 4)
    assert_equivalent(proto, model)


def test_weights_from_constant_subgraphs_fold() -> None:
    """A weight computed from constants through ops onnxscript does not fold (ConstantOfShape of an initializer's
    Shape, then Mul/Transpose/Cast) becomes an initializer: the MatMul gets a weight view; the values match ORT."""
    from onnx import TensorProto

    from sparseforge.ir.weights import view_of

    w = randn(4, 8)
    nodes = [helper.make_node("Shape", ["w0"], ["ws"]),
             helper.make_node("ConstantOfShape", ["ws"], ["half"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Mul", ["w0", "half"], ["wh"]),
             helper.make_node("Transpose", ["wh"], ["wt"], perm=[1, 0]),
             helper.make_node("Cast", ["wt"], ["W"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    proto = make_model(nodes, [vinfo("x", [2, 8])], [vinfo("y", [2, 4])], [init("w0", w)])
    model = to_ir(proto)
    Pipeline(canonicalize())(model)
    mm = next(n for n in model.graph if n.op_type == "MatMul")
    assert [n.op_type for n in model.graph] == ["MatMul"]
    np.testing.assert_array_equal(view_of(mm).matrix(), 0.5 * w)
    assert_equivalent(proto, model)


def test_tied_weight_stays_shared() -> None:
    """GPT-2 ties the token embedding and the LM head (``Gather(W)`` and ``MatMul(h, Transpose(W))``): folding the
    Transpose copied the weight (the exported file doubled). It stays one tensor; the results match ORT."""
    from onnx import TensorProto

    from sparseforge.ir.stats import model_stats

    nodes = [helper.make_node("Gather", ["wte", "ids"], ["h"], name="embed"),
             helper.make_node("Transpose", ["wte"], ["wt"], name="tie", perm=[1, 0]),
             helper.make_node("MatMul", ["h", "wt"], ["logits"], name="lm_head")]
    proto = make_model(nodes, [vinfo("ids", [2, 3], TensorProto.INT64)], [vinfo("logits", [2, 3, 300])],
                       [init("wte", randn(300, 16))])
    model = to_ir(proto)
    before = model_stats(model).parameters
    OptimizePass()(model)
    assert [n.op_type for n in model.graph] == ["Gather", "Transpose", "MatMul"]
    assert list(model.graph.initializers) == ["wte"]
    assert model_stats(model).parameters == before == 300 * 16
    assert_equivalent(proto, model)  # ids drawn from {0, 1}
    from sparseforge.ir.weights import runtime_weight

    lm_head = next(n for n in model.graph if n.name == "lm_head")
    assert "transpose of 'wte', which other layers share" in runtime_weight(lm_head)


def test_idempotent_chains_collapse_in_one_sweep() -> None:
    """Relu(Relu(Relu(x))) -> Relu(x); a Relu whose output is also read elsewhere stays; results match ORT."""
    from onnx import TensorProto

    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
             helper.make_node("Relu", ["h"], ["r1"], name="r1"),
             helper.make_node("Relu", ["r1"], ["r2"], name="r2"),
             helper.make_node("Relu", ["r2"], ["r3"], name="r3"),
             helper.make_node("Abs", ["r3"], ["a1"], name="a1"),
             helper.make_node("Abs", ["a1"], ["a2"], name="a2"),
             helper.make_node("Add", ["a2", "a1"], ["y"], name="add")]  # a1 has two readers: kept
    proto = make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", [2, 4], TensorProto.FLOAT)],
                       [init("w", randn(3, 4))])
    model = to_ir(proto)
    OptimizePass()(model)
    ops = [n.op_type for n in model.graph]
    assert ops.count("Relu") == 1 and ops.count("Abs") == 2, ops
    assert_equivalent(proto, model)
