"""Whole example models: ONNX export -> sparseforge TVM build -> compare with ONNX Runtime."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

pytest.importorskip("tvm")
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from conftest import assert_close, compile_and_explain  # noqa: E402

pytestmark = [pytest.mark.tvm, pytest.mark.torch]

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "models.py"


def _examples():
    spec = importlib.util.spec_from_file_location("sparseforge_examples_models", EXAMPLES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _export(factory_name):
    import onnx_ir

    model, inputs = getattr(_examples(), factory_name)()
    program = torch.onnx.export(model, inputs, dynamo=True, verbose=False)
    return onnx_ir.to_proto(program.model), [t.numpy() for t in inputs]


@pytest.mark.parametrize(
    ("factory", "kernels"),
    [
        ("transformer_encoder", {"Dense", "RowReduction", "Injective"}),
        ("small_cnn", {"Conv2dNCHWc", "DepthwiseNCHWc", "Dense"}),
    ],
)
def test_model_matches_onnxruntime(factory, kernels, host_target):
    from sparseforge.codegen import build as cg

    proto, inputs = _export(factory)
    mod = cg.import_onnx(proto)
    runner, picked = compile_and_explain(mod, host_target)
    assert kernels <= set(picked.values()), picked
    assert "Fallback" not in picked.values() and "" not in picked.values(), picked

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    expected = session.run(None, dict(zip(names, inputs, strict=True)))
    got = runner(*inputs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert_close(g, e)
