"""Frontends: ONNX files (external data, sparse initializers), PyTorch modules, .pt2 archives, factories."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnx_ir
import pytest
from helpers import init, make_model, randn, vinfo
from onnx import helper, numpy_helper

from sparseforge.errors import ModelLoadError, UnsupportedModelError
from sparseforge.ir.frontend import load, parse_shape_overrides, require_static_shapes
from sparseforge.ir.weights import constant_array


def mlp_proto(batch: int | str = 2) -> onnx.ModelProto:
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1)]
    return make_model(nodes, [vinfo("x", [batch, 8])], [vinfo("y", [batch, 3])],
                      [init("w1", randn(16, 8)), init("b1", randn(16, seed=1)), init("w2", randn(3, 16, seed=2))])


def test_load_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(mlp_proto(), path)
    model = load(path)
    assert [n.name for n in model.graph] == ["fc1", "relu", "fc2"]


def test_external_data_inside_the_folder_loads(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(mlp_proto(), path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    model = load(path)
    np.testing.assert_array_equal(constant_array(model.graph.initializers["w1"]), randn(16, 8))


def _with_location(tmp_path: Path, location: str) -> Path:
    proto = mlp_proto()
    for tensor in proto.graph.initializer:
        if tensor.name == "w1":
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", location
    path = tmp_path / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path.parent / "outside.bin").write_bytes(b"\0" * 1024)
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load(_with_location(tmp_path, location))


def test_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path.parent / f"{tmp_path.name}_secret.bin"
    target.write_bytes(b"\0" * 1024)
    (tmp_path / "link.bin").symlink_to(target)
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load(_with_location(tmp_path, "link.bin"))


def test_missing_external_data(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is missing"):
        load(_with_location(tmp_path, "weights.bin"))


def test_truncated_external_data(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(mlp_proto(), path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    data = tmp_path / "weights.bin"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="shorter than"):
        load(path)


def test_sparse_initializers_are_densified(tmp_path: Path) -> None:
    w = randn(16, 8)
    w[np.abs(w) < 1.0] = 0
    proto = mlp_proto()
    kept = [t for t in proto.graph.initializer if t.name != "w1"]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    flat = np.flatnonzero(w)
    values = numpy_helper.from_array(w.reshape(-1)[flat], "w1")
    indices = numpy_helper.from_array(flat.astype(np.int64), "w1_idx")
    proto.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [16, 8]))
    path = tmp_path / "sparse.onnx"
    path.write_bytes(proto.SerializeToString())
    model = load(path)
    np.testing.assert_array_equal(constant_array(model.graph.initializers["w1"]), w)


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"this is not a protobuf at all \xff\xfe\x00", "not a valid ONNX model|not an ONNX model"),
])
def test_not_onnx(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        load(path)


def test_truncated_onnx(tmp_path: Path) -> None:
    data = mlp_proto().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        load(path)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="directory"):
        load(tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        load(tmp_path / "nope.onnx")


def test_empty_graph(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    onnx.save(make_model([], [vinfo("x", [1])], [vinfo("x", [1])]), path)
    with pytest.raises(UnsupportedModelError, match="no nodes"):
        load(path)


def test_dynamic_shapes_need_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "dyn.onnx"
    onnx.save(mlp_proto(batch="N"), path)
    model = load(path)
    with pytest.raises(UnsupportedModelError, match="dynamic dimensions") as info:
        require_static_shapes(model)
    assert "--shape x=N,8" in info.value.message
    model = load(path, input_shapes=parse_shape_overrides(["x=4,8"]))
    require_static_shapes(model)
    assert list(model.graph.inputs[0].shape) == [4, 8]
    with pytest.raises(UnsupportedModelError, match="not a graph input"):
        load(path, input_shapes={"nope": [1]})
    with pytest.raises(UnsupportedModelError, match="bad --shape"):
        parse_shape_overrides(["x=4,zero"])


def test_unknown_source_type() -> None:
    with pytest.raises(ModelLoadError, match="cannot load an object"):
        load(42)


@pytest.mark.torch
def test_torch_module_and_layer_names() -> None:
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

        def forward(self, x):
            return self.body(x)

    model = load(Net().eval(), (torch.randn(3, 8),))
    names = {n.name for n in model.graph if n.op_type in ("Gemm", "MatMul")}
    assert names == {"body.0", "body.2"}
    with pytest.raises(ModelLoadError, match="needs example inputs"):
        load(Net())


@pytest.mark.torch
def test_pt2_round_trip_and_pickle_refusal(tmp_path: Path) -> None:
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(1, 3, 8, 8),)), path)
    model = load(path)
    assert any(n.op_type == "Conv" for n in model.graph)
    # an archive carrying a pickled payload is refused before anything is unpickled
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, src.read(item))
        prefix = src.namelist()[0].split("/")[0]
        dst.writestr(f"{prefix}/data/constants/custom_obj_0", b"\x80\x04evil")
    with pytest.raises(ModelLoadError, match="never unpickles"):
        load(bad)
    not_zip = tmp_path / "x.pt2"
    not_zip.write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match="not a torch.export archive"):
        load(not_zip)


@pytest.mark.torch
def test_factory_specs(tmp_path: Path) -> None:
    script = tmp_path / "factory.py"
    script.write_text(
        "import torch\n"
        "def build():\n    return torch.nn.Linear(4, 2).eval(), (torch.randn(1, 4),)\n"
        "def wrong():\n    return 3\n"
        "def boom():\n    raise RuntimeError('kaput')\n")
    assert len(load(f"{script}:build").graph) >= 1
    with pytest.raises(ModelLoadError, match="must return"):
        load(f"{script}:wrong")
    with pytest.raises(ModelLoadError, match="kaput"):
        load(f"{script}:boom")
    with pytest.raises(ModelLoadError, match="(?s)no function 'missing'.*build"):
        load(f"{script}:missing")
    with pytest.raises(ModelLoadError, match="needs a factory name"):
        load(str(script))


def test_torch_export_falls_back_to_the_torchscript_exporter(monkeypatch, caplog) -> None:
    """When the dynamo exporter fails, dynamo=False is tried (it works for T5) and a warning says so."""
    torch = pytest.importorskip("torch")
    from sparseforge.ir import frontend

    real_export = torch.onnx.export

    def dynamo_fails(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("Failed to convert the exported program.\nNext steps: report it") from ValueError(
                "view size is not compatible with input tensor's size and stride")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())
    with caplog.at_level("WARNING"):
        model = frontend.load(module, (torch.randn(2, 8),))
    assert any(n.op_type in ("Gemm", "MatMul") for n in model.graph)
    assert "TorchScript exporter" in caplog.text and "view size is not compatible" in caplog.text


def test_torch_export_failure_names_the_root_cause(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from sparseforge.errors import ModelLoadError
    from sparseforge.ir import frontend

    def always_fails(*args, dynamo=True, **kwargs):
        raise RuntimeError("Next steps: something generic") from ValueError(f"the real cause (dynamo={dynamo})")

    monkeypatch.setattr(torch.onnx, "export", always_fails)
    with pytest.raises(ModelLoadError) as info:
        frontend.load(torch.nn.Linear(8, 4), (torch.randn(2, 8),))
    message = info.value.message
    assert "the real cause (dynamo=True)" in message and "the real cause (dynamo=False)" in message
    assert "Next steps" not in message


def _ir3_model() -> onnx.ModelProto:
    """An IR version 3 model (opset 8): every initializer is also listed as a graph input, as IR < 4 required."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    w[:, 3] = 0
    b = rng.standard_normal(8).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc1"), helper.make_node("Relu", ["h"], ["y"], name="r")],
        "ir3", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("x", [2, 16]), ("w", [16, 8]),
                                                                                   ("b", [8]))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3
    return model


def test_ir3_initializers_listed_as_inputs_are_constants(tmp_path) -> None:
    from sparseforge import api
    from sparseforge.runtime.compare import compare

    src = tmp_path / "ir3.onnx"
    onnx.save(_ir3_model(), src)
    result = api.inspect(src)
    assert [layer.node for layer in result.layers] == ["fc1"]
    out = tmp_path / "out.onnx"
    exported = api.export(src, out, verify=True)
    assert exported.comparison.ok
    assert [i.name for i in onnx.load(out).graph.input] == ["x"]
    assert compare(_ir3_model(), onnx.load(out)).ok


def test_sequence_inputs_are_refused_without_a_shape_hint() -> None:
    from onnx import TensorProto, helper

    from sparseforge.errors import UnsupportedModelError
    from sparseforge.ir.frontend import require_static_shapes

    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"])], "g",
                              [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    model = onnx_ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    with pytest.raises(UnsupportedModelError, match="input 's' is a sequence") as info:
        require_static_shapes(model)
    assert "--shape" not in info.value.message


def test_ir4_initializer_inputs_are_inputs_unless_frozen(tmp_path) -> None:
    from sparseforge.ir.weights import runtime_weight, view_of

    proto = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                       [vinfo("x", [1, 2, 4, 4]), vinfo("w", [3, 2, 1, 1])], [vinfo("y", [1, 3, 4, 4])],
                       [init("w", randn(3, 2, 1, 1))])
    assert proto.ir_version >= 4
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    model = load(path)
    conv = next(iter(model.graph))
    assert view_of(conv) is None and "--freeze-initializer-inputs" in runtime_weight(conv)
    frozen = load(path, freeze_initializer_inputs=True)
    assert [v.name for v in frozen.graph.inputs] == ["x"] and view_of(next(iter(frozen.graph))) is not None


def test_a_model_proto_passed_in_is_not_changed() -> None:
    """The IR shares tensors with the proto it reads: loading works on a copy, so passes that rename weights
    (canonicalization names them after their layer) leave the caller's proto as it was."""
    from sparseforge.passes.infra import Pipeline
    from sparseforge.passes.pipelines import export

    proto = make_model([helper.make_node("MatMul", ["x", "b1"], ["y"], name="fc")], [vinfo("x", [2, 8])],
                       [vinfo("y", [2, 8])], [init("b1", randn(8, 8))])
    before = proto.SerializeToString()
    Pipeline(export())(load(proto))
    assert proto.SerializeToString() == before
