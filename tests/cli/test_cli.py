"""CLI: exit codes, one-line errors, nothing written on failure, JSON schema, export/prune end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import init, make_model, randn, vinfo
from onnx import helper

from sparseforge.cli import main
from sparseforge.runtime.compare import compare


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def conv_model(dead_rows=(1, 3), batch: int | str = 1) -> onnx.ModelProto:
    w1 = randn(6, 3, 3, 3)
    w1[list(dead_rows)] = 0
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    b1 = randn(6, seed=1)
    b1[list(dead_rows)] = 0
    return make_model(nodes, [vinfo("x", [batch, 3, 8, 8])], [vinfo("y", [batch, 4, 8, 8])],
                      [init("w1", w1), init("b1", b1), init("w2", randn(4, 6, 1, 1, seed=2))])


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save(conv_model(), path)
    return path


def test_help_texts_explain_model_argument() -> None:
    for cmd in ("inspect", "export", "prune"):
        result = run(cmd, "--help")
        assert result.exit_code == 0
        assert "FILE.py:FACTORY" in result.output
    assert "Typical session" in run("--help").output


def test_inspect_table_and_summary(model_file: Path) -> None:
    result = run("inspect", str(model_file))
    assert result.exit_code == 0, result.output
    assert "conv1" in result.output and "Summary:" in result.output
    assert "2 dead output" in result.output


def test_inspect_json_schema(model_file: Path) -> None:
    result = run("inspect", str(model_file), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    layer = doc["layers"][0]
    for key in ("node", "op_type", "weight", "shape", "density", "nm", "block_zero_fraction",
                "dead_output_channels", "dead_input_channels", "rank", "rank_99"):
        assert key in layer
    assert layer["node"] == "conv1" and layer["shape"] == [6, 27]
    assert set(layer["nm"]) == {"1:4", "2:4", "2:8", "4:8"}
    assert set(layer["block_zero_fraction"]) == {"1x4", "4x1", "4x4", "8x1", "1x8", "16x1", "16x16"}
    assert layer["dead_output_channels"] == [1, 3]
    assert doc["summary"]["dead_output_channels"] == 2


def test_export_verify_shrinks_and_matches(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    result = run("export", str(model_file), "-o", str(out), "--verify")
    assert result.exit_code == 0, result.output
    assert "verify: max abs error" in result.output and "parameters" in result.output
    exported = onnx.load(out)
    w1 = next(t for t in exported.graph.initializer if t.dims[0] == 4 and len(t.dims) == 4 and t.dims[1] == 3)
    assert list(w1.dims) == [4, 3, 3, 3]
    assert compare(onnx.load(model_file), exported).ok


def test_export_sparse_storage_runs_in_onnxruntime(tmp_path: Path) -> None:
    proto = conv_model(dead_rows=())
    w = randn(256, 64)
    w[np.abs(w) < 1.6] = 0  # ~89% zeros
    proto.graph.node.append(helper.make_node("Reshape", ["y", "shape"], ["flat"], name="flat"))
    proto.graph.node.append(helper.make_node("MatMul", ["flat", "w3"], ["z"], name="fc"))
    proto.graph.initializer.extend([init("w3", w), init("shape", np.array([1, 256], np.int64))])
    del proto.graph.output[:]
    proto.graph.output.append(vinfo("z", [1, 64]))
    src = tmp_path / "m.onnx"
    onnx.save(proto, src)
    dense, sparse = tmp_path / "dense.onnx", tmp_path / "sparse.onnx"
    assert run("export", str(src), "-o", str(dense)).exit_code == 0
    result = run("export", str(src), "-o", str(sparse), "--sparse-storage", "--verify")
    assert result.exit_code == 0, result.output
    assert len(onnx.load(sparse).graph.sparse_initializer) == 1
    assert sparse.stat().st_size < dense.stat().st_size


def test_prune_then_export(model_file: Path, tmp_path: Path) -> None:
    pruned, small = tmp_path / "p.onnx", tmp_path / "s.onnx"
    result = run("prune", str(model_file), "-o", str(pruned), "--method", "channel", "--sparsity", "0.5")
    assert result.exit_code == 0, result.output
    assert "APPROXIMATE" in result.output
    result = run("export", str(pruned), "-o", str(small), "--verify", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["after"]["parameters"] < doc["before"]["parameters"]
    assert doc["verify"]["ok"]


def test_prune_json_and_nm(model_file: Path, tmp_path: Path) -> None:
    result = run("prune", str(model_file), "-o", str(tmp_path / "p.onnx"), "--method", "nm", "--nm", "2:4",
                 "--json")
    doc = json.loads(result.output)
    assert doc["layers"][0]["sparsity_after"] >= 0.5
    assert "output_deviation" in doc


# ------------------------------------------------------------------ bad input: one message, exit 2, no output


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(conv_model().SerializeToString()[:200])
    text = tmp_path / "notes.onnx"
    text.write_text("hello, I am not a model")
    folder = tmp_path / "folder"
    folder.mkdir()
    empty = tmp_path / "empty.onnx"
    onnx.save(make_model([], [vinfo("x", [1])], [vinfo("x", [1])]), empty)
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save(conv_model(batch="N"), dynamic)
    outside, missing = tmp_path / "outside" / "m.onnx", tmp_path / "missing" / "m.onnx"
    for path, location in ((outside, "../secret.bin"), (missing, "weights.bin")):
        path.parent.mkdir()
        proto = conv_model()
        tensor = proto.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
        path.write_bytes(proto.SerializeToString())
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    return {
        "truncated": (truncated, "not a valid ONNX model"),
        "not onnx": (text, "not a valid ONNX model|not an ONNX model"),
        "directory": (folder, "is a directory"),
        "missing": (tmp_path / "nope.onnx", "no such file"),
        "empty graph": (empty, "no nodes"),
        "dynamic": (dynamic, "dynamic dimensions"),
        "external outside": (outside, "outside the model's folder"),
        "external missing": (missing, "is missing"),
    }


@pytest.mark.parametrize("command", ["inspect", "export", "prune"])
def test_bad_inputs(tmp_path: Path, command: str) -> None:
    import re

    for label, (path, message) in _bad_files(tmp_path).items():
        out = tmp_path / f"out_{command}.onnx"
        args = [command, str(path)]
        if command != "inspect":
            args += ["-o", str(out)]
        if command == "prune":
            args += ["--method", "magnitude", "--sparsity", "0.5"]
        result = run(*args)
        assert result.exit_code == 2, (label, result.output)
        assert re.search(message, result.output), (label, result.output)
        assert "Traceback" not in result.output
        assert result.output.count("error:") == 1, (label, result.output)
        assert not out.exists(), label


def test_runtime_weight_layer_is_kept_dense_and_named_literally(tmp_path: Path) -> None:
    """A Conv weight given at run time: inspect notes the layer, export keeps it and ORT still matches. The node
    name holds rich markup (``[/x]``), which must print as written."""
    path = tmp_path / "runtime_weight.onnx"
    nc = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c[/x]")],
                    [vinfo("x", [1, 1, 4, 4]), vinfo("w", [1, 1, 1, 1])], [vinfo("y", [1, 1, 4, 4])])
    onnx.save(nc, path)
    result = run("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert "not analysed: c[/x]: the weight 'w' is a graph input" in result.output
    out = tmp_path / "o.onnx"
    result = run("export", str(path), "-o", str(out), "--verify", "--verbose")
    assert result.exit_code == 0, result.output
    assert "c[/x]" in result.output and out.exists()


def test_unwritable_outputs(model_file: Path, tmp_path: Path) -> None:
    for output, message in ((tmp_path / "no" / "dir" / "x.onnx", "does not exist"),
                            (tmp_path, "is a directory"),
                            (Path("/proc/sparseforge.onnx"), "cannot write"),
                            (model_file, "overwrite the input")):
        result = run("export", str(model_file), "-o", str(output))
        assert result.exit_code == 2, (output, result.output)
        assert message in result.output
    assert onnx.load(model_file).graph.node[0].name == "conv1"  # input untouched


def test_dynamic_shape_fix_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "dyn.onnx"
    onnx.save(conv_model(batch="N"), path)
    result = run("export", str(path), "-o", str(tmp_path / "o.onnx"), "--shape", "x=2,3,8,8", "--verify")
    assert result.exit_code == 0, result.output


def test_bad_option_values(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.onnx"
    result = run("prune", str(model_file), "-o", str(out), "--method", "magnitude")
    assert result.exit_code == 2 and "--sparsity is required" in result.output
    result = run("prune", str(model_file), "-o", str(out), "--method", "block", "--sparsity", "0.5",
                 "--block", "4by1")
    assert result.exit_code == 2 and "bad block shape" in result.output
    assert not out.exists()


def test_failed_verification_exits_1_and_writes_nothing(model_file: Path, tmp_path: Path, monkeypatch) -> None:
    import sparseforge.api as api
    from sparseforge.runtime.compare import Comparison, OutputError

    monkeypatch.setattr(api, "compare", lambda *a, **k: Comparison([OutputError("y", 1.0, 0.5)], 1e-5))
    out = tmp_path / "o.onnx"
    result = run("export", str(model_file), "-o", str(out), "--verify")
    assert result.exit_code == 1
    assert "differs from the original" in result.output
    assert not out.exists() and not list(tmp_path.glob(".o.onnx*"))


def test_quantized_layers_are_seen(tmp_path: Path) -> None:
    """A model from onnxruntime's quantize_dynamic (MatMulInteger layers) was '0 weights' to inspect, 'no change'
    to prune and '0 of 0' to compile: its layers are analysed on their integer values and reported."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    w1, w2 = randn(32, 64), randn(64, 8, seed=1)
    w1[:, :16] = 0  # 16 dead output columns survive quantization as zero-point values
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2")]
    float_path, quant_path = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(make_model(nodes, [vinfo("x", [4, 32])], [vinfo("y", [4, 8])], [init("w1", w1), init("w2", w2)]),
              float_path)
    quantize_dynamic(str(float_path), str(quant_path), weight_type=QuantType.QInt8)
    assert {n.op_type for n in onnx.load(quant_path).graph.node} >= {"MatMulInteger"}

    doc = json.loads(run("inspect", str(quant_path), "--json").output)
    layers = {layer["op_type"] for layer in doc["layers"]}
    assert layers == {"MatMulInteger"} and len(doc["layers"]) == 2
    first = min(doc["layers"], key=lambda layer: layer["density"])
    assert first["dead_output_channels"] == list(range(16)) and first["shape"] == [64, 32]
    result = run("prune", str(quant_path), "-o", str(tmp_path / "p.onnx"), "--method", "magnitude",
                 "--sparsity", "0.5")
    assert "not pruned" in result.output, result.output
    export = json.loads(run("export", str(quant_path), "-o", str(tmp_path / "e.onnx"), "--json").output)
    assert export["after"]["parameters"] == export["before"]["parameters"]
    pytest.importorskip("tvm")
    result = run("compile", str(quant_path), "-o", str(tmp_path / "art"), "--dense", "--threads", "1", "--verify")
    assert result.exit_code == 0, result.output
    decisions = json.loads((tmp_path / "art" / "manifest.json").read_text())["decisions"]
    assert len(decisions) == 2 and all("quantized layer (int8 weights)" in d["reason"] for d in decisions)
