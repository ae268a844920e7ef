"""The (output, reduction) weight view in every layout, and its inverse."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import init, make_model, randn, to_ir, vinfo
from onnx import helper

from sparseforge.ir.weights import runtime_weight, view_of, weight_views

M = randn(6, 4)  # (output, reduction)


@pytest.mark.parametrize("node,stored,data_index", [
    (helper.make_node("MatMul", ["x", "W"], ["y"]), M.T, 0),
    (helper.make_node("MatMul", ["W", "x"], ["y"]), M, 1),
    (helper.make_node("Gemm", ["x", "W"], ["y"], transB=1), M, 0),
    (helper.make_node("Gemm", ["x", "W"], ["y"], transB=0), M.T, 0),
    (helper.make_node("Gemm", ["W", "x"], ["y"], transA=0), M, 1),
    (helper.make_node("Gemm", ["W", "x"], ["y"], transA=1), M.T, 1),
])
def test_matmul_layouts(node, stored, data_index) -> None:
    model = to_ir(make_model([node], [vinfo("x", None)], [vinfo("y", None)], [init("W", stored.copy())]))
    view = view_of(next(iter(model.graph)))
    assert view.data_index == data_index
    assert view.shape == (6, 4)
    np.testing.assert_array_equal(view.matrix(), M)
    np.testing.assert_array_equal(view.to_stored(view.matrix()), stored)


def test_conv_view_is_input_channel_major() -> None:
    w = randn(8, 2, 3, 3)
    node = helper.make_node("Conv", ["x", "W", "b"], ["y"], group=3)
    model = to_ir(make_model([node], [vinfo("x", None)], [vinfo("y", None)], [init("W", w), init("b", randn(8))]))
    view = view_of(next(iter(model.graph)))
    assert view.shape == (8, 18) and view.groups == 3 and view.kernel_shape == (3, 3)
    assert view.matrix()[5, 1 * 9 + 4] == w[5, 1, 1, 1]
    np.testing.assert_array_equal(view.to_stored(view.matrix()), w)
    assert view.bias is not None


def test_non_constant_conv_weight_stays_dense_with_a_note() -> None:
    """A Conv weight given at run time has no view (the layer is compiled as written) and a reason."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c1")
    model = to_ir(make_model([node], [vinfo("x", [1, 1, 3, 3]), vinfo("w", [1, 1, 1, 1])], [vinfo("y", None)]))
    conv = next(iter(model.graph))
    assert list(weight_views(model.graph)) == [] and view_of(conv) is None
    assert runtime_weight(conv) == ("the weight 'w' is a graph input: the layer is compiled dense, as written, "
                                    "and not analysed")


def test_activation_product_is_not_a_runtime_weight() -> None:
    """MatMul of two computed values (attention's Q @ K^T) is not a weight: no note."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("MatMul", ["a", "a"], ["y"])]
    model = to_ir(make_model(nodes, [vinfo("x", [3, 3])], [vinfo("y", None)]))
    assert [runtime_weight(n) for n in model.graph] == [None, None]


def test_initializer_that_is_also_an_input_is_not_constant() -> None:
    node = helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)
    proto = make_model([node], [vinfo("x", [1, 4]), vinfo("W", [6, 4])], [vinfo("y", None)], [init("W", M)])
    model = to_ir(proto)
    assert view_of(next(iter(model.graph))) is None


def test_parameter_count_covers_every_numeric_dtype() -> None:
    """int8 quantized weights (MatMulInteger, quantize_dynamic) are parameters too; a boolean mask is not."""
    import onnx_ir as ir
    from onnx import TensorProto, helper, numpy_helper

    from sparseforge.ir.stats import parameter_count

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"], name="mmi"),
         helper.make_node("Where", ["mask", "y", "y"], ["z"], name="where")], "q",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 16])],
        [helper.make_tensor_value_info("z", TensorProto.INT32, [2, 8])],
        [numpy_helper.from_array(np.ones((16, 8), np.int8), "w"), numpy_helper.from_array(np.uint8(3), "xz"),
         numpy_helper.from_array(np.int8(0), "wz"), numpy_helper.from_array(np.ones((2, 8), bool), "mask")])
    assert parameter_count(ir.from_proto(helper.make_model(graph))) == 16 * 8 + 1 + 1
