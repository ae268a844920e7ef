"""The compile -> load -> run flow: pinned bugs (0-d inputs, reloading a recompiled artifact) and the artifact's
ONNX file checked before it is written."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest
from helpers import make_model, vinfo
from onnx import helper

from sparseforge import api
from sparseforge.ir.validate import written_file_problem

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ir"))  # shared test models

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm


def _unary(op: str, shape) -> onnx.ModelProto:
    return make_model([helper.make_node(op, ["x"], ["y"], name=op.lower())], [vinfo("x", shape)], [vinfo("y", shape)])


def test_scalar_inputs_stay_scalar(tmp_path) -> None:
    """A 0-d input was turned into shape (1,) on the way to the VM."""
    model = make_model([helper.make_node("Add", ["x", "s"], ["y"], name="add")],
                       [vinfo("x", [2, 3]), vinfo("s", [])], [vinfo("y", [2, 3])])
    src = tmp_path / "scalar.onnx"
    onnx.save(model, src)
    api.compile(src, tmp_path / "out", threads=1, dense=True)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = api.run(tmp_path / "out", {"x": x, "s": np.float32(2.5)})
    np.testing.assert_allclose(got["y"], x + 2.5)
    with pytest.raises(Exception, match=r"shape \[1\]"):
        api.run(tmp_path / "out", {"x": x, "s": np.array([2.5], np.float32)})


def test_reloading_a_recompiled_artifact_runs_the_new_code(tmp_path) -> None:
    """dlopen caches by path: loading model.so again after a recompile into the same folder ran the old code."""
    x = np.array([[-1.0, 2.0, -3.0]], np.float32)
    out = tmp_path / "art"
    for op, expected in (("Abs", np.abs(x)), ("Neg", -x), ("Abs", np.abs(x))):
        src = tmp_path / f"{op}.onnx"
        onnx.save(_unary(op, [1, 3]), src)
        api.compile(src, out, threads=1, dense=True)
        np.testing.assert_array_equal(api.run(out, {"x": x})["y"], expected)


def test_artifact_onnx_file_is_valid(tmp_path) -> None:
    src = tmp_path / "relu.onnx"
    onnx.save(_unary("Relu", [2, 4]), src)
    result = api.compile(src, tmp_path / "out", threads=1, dense=True)
    assert written_file_problem(result.outdir / "model.onnx") is None


def _matmul(dtype=onnx.TensorProto.FLOAT) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(dtype)
    w = onnx.numpy_helper.from_array(rng.standard_normal((64, 48)).astype(np_dtype), "w")
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vinfo("x", [8, 64], dtype)],
                      [vinfo("y", [8, 48], dtype)], [w])


def test_fp16_tolerance_follows_the_dtype(tmp_path) -> None:
    src = tmp_path / "half.onnx"
    onnx.save(_matmul(onnx.TensorProto.FLOAT16), src)
    result = api.compile(src, tmp_path / "out", threads=1, dense=True, verify=True)
    report = result.manifest["verify"]
    assert report["ok"], report
    assert report["rtol"] == 1e-2 and result.outdir is not None


def test_failed_verification_writes_nothing(tmp_path) -> None:
    src = tmp_path / "mm.onnx"
    model = _matmul()
    model.graph.node.append(helper.make_node("Exp", ["y"], ["z"], name="exp"))  # compiled with a fast exp
    model.graph.output[0].name = "z"
    onnx.save(model, src)
    out = tmp_path / "out"
    result = api.compile(src, out, threads=1, dense=True, verify=True, rtol=1e-30)  # any rounding difference fails
    assert not result.manifest["verify"]["ok"]
    assert result.outdir is None and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["mm.onnx"]


def test_ir3_model_compiles_and_matches_onnxruntime(tmp_path) -> None:
    from test_frontend import _ir3_model

    src = tmp_path / "ir3.onnx"
    onnx.save(_ir3_model(), src)
    result = api.compile(src, tmp_path / "out", threads=1, dense=True, verify=True)
    assert result.manifest["verify"]["ok"], result.manifest["verify"]
    assert [i["name"] for i in result.manifest["inputs"]] == ["x"]


def _reduce_with_axes_input() -> onnx.ModelProto:
    return make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum", keepdims=0)],
                      [vinfo("x", [2, 3]), vinfo("axes", [1], onnx.TensorProto.INT64)], [vinfo("y", [2])])


def test_runtime_axes_are_refused_with_a_bind_hint(tmp_path) -> None:
    from sparseforge.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match=r"--bind axes=") as info:
        api.compile(_reduce_with_axes_input(), tmp_path / "out", threads=1, dense=True)
    assert info.value.bindable == ("axes",)
    assert not (tmp_path / "out").exists()


def test_bound_input_compiles_and_other_values_are_refused(tmp_path) -> None:
    result = api.compile(_reduce_with_axes_input(), tmp_path / "out", threads=1, dense=True, verify=True,
                         bind=api.parse_bindings(["axes=1"]))
    assert result.manifest["verify"]["ok"]
    assert result.manifest["bound_inputs"] == {"axes": {"dtype": "int64", "shape": [1], "values": [1]}}
    assert [i["name"] for i in result.manifest["inputs"]] == ["x"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(api.run(result.outdir, {"x": x})["y"], x.sum(axis=1))
    np.testing.assert_allclose(api.run(result.outdir, {"x": x, "axes": np.array([1])})["y"], x.sum(axis=1))
    with pytest.raises(Exception, match=r"bound at compile time to \[1\]; got \[0\]"):
        api.run(result.outdir, {"x": x, "axes": np.array([0])})


def test_low_rank_layer_compiles_as_two_products(tmp_path) -> None:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((256, 8)) @ rng.standard_normal((8, 192))).astype(np.float32)  # [K, N], rank 8
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], [vinfo("x", [4, 256])],
                       [vinfo("y", [4, 192])], [helper.make_tensor("w", onnx.TensorProto.FLOAT, w.shape, w.ravel())])
    result = api.compile(model, tmp_path / "out", threads=1, calibrate=False, verify=True)
    assert result.manifest["verify"]["ok"], result.manifest["verify"]
    assert "LowRank" in result.manifest["passes"]
    assert "LowRank" not in api.compile(model, None, threads=1, dense=True).manifest["passes"]  # the control
    assert [d["node"] for d in result.manifest["decisions"]] == ["fc/low_rank", "fc"]
    assert [list(d["shape"]) for d in result.manifest["decisions"]] == [[8, 256], [192, 8]]
