"""sparseforge's own converters against the ONNX node tests' expected outputs and ONNX Runtime.

Resize: every node test case, with its roi/scales/sizes inputs made initializers (how exporters write them: the op
contract refuses them as run-time inputs). fp16: ops computed in float32 and rounded once match ORT.
"""

from __future__ import annotations

import pathlib
import pickle
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

pytest.importorskip("tvm")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import conformance  # noqa: E402

from sparseforge import api  # noqa: E402

pytestmark = [pytest.mark.tvm]


def _resize_cases() -> list[str]:
    root = conformance.materialize()
    return sorted(p.name for p in root.iterdir() if p.name.startswith("test_resize_"))


def _with_constant_parameters(case: str) -> tuple[onnx.ModelProto, dict, list]:
    folder = conformance.materialize() / case
    model = onnx.load(folder / "model.onnx")
    data = pickle.loads((folder / "data.pkl").read_bytes())
    graph = model.graph
    inputs = list(graph.input)
    for vi, value in zip(inputs[1:], data["inputs"][1:]):
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), vi.name))
    del graph.input[1:]
    return model, {inputs[0].name: data["inputs"][0]}, data["outputs"]


@pytest.mark.slow
@pytest.mark.parametrize("case", _resize_cases())
def test_resize_with_constant_parameters(case: str, tmp_path: pathlib.Path) -> None:
    model, feeds, expected = _with_constant_parameters(case)
    api.compile(model, tmp_path / "a", target="x86", threads=1, dense=True)
    got = api.run(tmp_path / "a", feeds)
    conformance.compare(expected, [got[model.graph.output[0].name]])


def test_resize_runtime_scales_are_refused(tmp_path: pathlib.Path) -> None:
    from sparseforge.errors import UnsupportedOpError

    model = onnx.load(conformance.materialize() / "test_resize_upsample_scales_linear" / "model.onnx")
    with pytest.raises(UnsupportedOpError, match="Resize node .*input 2 .*must be a constant"):
        api.compile(model, tmp_path / "a", target="x86", threads=1, dense=True)


def test_fp16_matmul_softmax_round_once(tmp_path: pathlib.Path) -> None:
    """fp16 MatMul -> Softmax: computed in float32 and rounded once, so within an fp16 unit of ORT's result."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 48)) * 0.3).astype(np.float16)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [4, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4, 48])],
                              [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((4, 64)).astype(np.float16)
    api.compile(model, tmp_path / "a", target="x86", threads=1, dense=True)
    got = api.run(tmp_path / "a", {"x": x})["y"]
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("case", ["test_mod_float_edge_cases_fmod_0_float32", "test_mod_mixed_sign_float64",
                                  "test_bitshift_right_int8_shift_ge_width", "test_mvn",
                                  "test_rotary_embedding", "test_layer_normalization_2d_axis0",
                                  "test_attention_4d_causal_fp16_expanded"])
def test_fixed_node_cases_pass(case: str) -> None:
    """Cases that were wrong, internal errors or refused before their converter (or function expansion)."""
    record = conformance.run_case(conformance.materialize() / case, with_ort=False)
    assert record["status"] == "pass", record
