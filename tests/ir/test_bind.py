"""Binding graph inputs to fixed values (``compile --bind``): parsing, exact dtype conversion, shapes, refusals."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from helpers import make_model, vinfo
from onnx import TensorProto, helper

from sparseforge.errors import UnsupportedModelError
from sparseforge.ir.bind import bind_inputs, check_bound, parse_bindings


def _reduce_model(axes_shape=(1,), axes_dtype=TensorProto.INT64) -> ir.Model:
    proto = make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum", keepdims=0)],
                       [vinfo("x", [2, 3]), vinfo("axes", list(axes_shape), axes_dtype)], [vinfo("y", [2])])
    return ir.from_proto(proto)


def test_parse_numbers_and_files(tmp_path) -> None:
    np.save(tmp_path / "s.npy", np.array([1.0, 2.0], np.float32))
    values = parse_bindings(["axes=1", "shape=2,3,-1", "scales=@s.npy"], base=tmp_path)
    assert values["axes"].shape == () and values["axes"].item() == 1
    assert values["shape"].tolist() == [2, 3, -1]
    assert values["scales"].dtype == np.float32 and values["scales"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("text,match", [("axes", "not NAME=VALUES"), ("=1", "not NAME=VALUES"),
                                        ("axes=one", "'one' is not a number"), ("a=@missing.npy", "cannot read")])
def test_parse_errors(text, match, tmp_path) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        parse_bindings([text], base=tmp_path)


def test_pickled_npy_is_not_loaded(tmp_path) -> None:
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsupportedModelError, match="cannot read"):
        parse_bindings(["a=@p.npy"], base=tmp_path)


def test_bound_input_becomes_an_initializer_in_the_declared_dtype_and_shape() -> None:
    model = _reduce_model()
    record = bind_inputs(model, parse_bindings(["axes=1"]))
    assert [v.name for v in model.graph.inputs] == ["x"]
    value = model.graph.initializers["axes"]
    assert value.const_value.numpy().dtype == np.int64 and value.const_value.numpy().tolist() == [1]
    assert record == {"axes": {"dtype": "int64", "shape": [1], "values": [1]}}


def test_scalar_input_stays_scalar() -> None:
    model = _reduce_model(axes_shape=())
    bind_inputs(model, {"axes": np.int32(0)})
    assert model.graph.initializers["axes"].const_value.numpy().shape == ()


@pytest.mark.parametrize("values,match", [
    ({"nope": 1}, "not a graph input"),
    ({"axes": np.array(1.5)}, "cannot be held exactly"),
    ({"axes": np.array([1, 0])}, "2 values given"),
])
def test_refusals(values, match) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        bind_inputs(_reduce_model(), values)


def test_out_of_range_integer_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="cannot be held exactly"):
        bind_inputs(_reduce_model(axes_dtype=TensorProto.UINT8), {"axes": np.array([300])})


def test_check_bound() -> None:
    record = {"dtype": "int64", "shape": [1], "values": [1]}
    assert check_bound("axes", np.array([1], np.int32), record) is None
    assert "bound at compile time to [1]; got [0]" in check_bound("axes", np.array([0]), record)
    assert check_bound("axes", np.array([1, 1]), record) is not None


def test_float_values_round_like_literals_and_overflow_is_refused() -> None:
    proto = make_model([helper.make_node("Mul", ["x", "s"], ["y"], name="mul")],
                       [vinfo("x", [2]), vinfo("s", [1])], [vinfo("y", [2])])
    model = ir.from_proto(proto)
    bind_inputs(model, parse_bindings(["s=0.1"]))
    assert model.graph.initializers["s"].const_value.numpy().tolist() == [np.float32(0.1)]
    record = {"dtype": "float32", "shape": [1], "values": [float(np.float32(0.1))]}
    assert check_bound("s", np.array([0.1]), record) is None  # float64 0.1 is the bound float32 0.1
    assert check_bound("s", np.array([0.2]), record) is not None
    with pytest.raises(UnsupportedModelError, match="do not fit"):
        bind_inputs(ir.from_proto(proto), {"s": np.array([1e300])})
