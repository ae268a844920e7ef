"""compile / run / bench / calibrate from the command line, and the artifact format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import init, make_model, randn, vinfo
from onnx import helper

from sparseforge.cli import main

pytestmark = pytest.mark.tvm


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def mlp_file(tmp_path: Path) -> Path:
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1)]
    proto = make_model(nodes, [vinfo("x", [4, 32])], [vinfo("y", [4, 8])],
                       [init("w1", randn(64, 32)), init("b1", randn(64, seed=1)), init("w2", randn(8, 64, seed=2))])
    path = tmp_path / "mlp.onnx"
    onnx.save(proto, path)
    return path


def test_compile_dense_run_and_manifest(tmp_path: Path) -> None:
    model = mlp_file(tmp_path)
    outdir = tmp_path / "art"
    result = run("compile", str(model), "--target", "x86", "-o", str(outdir), "--dense", "--threads", "1", "--verify")
    assert result.exit_code == 0, result.output
    assert "max abs error" in result.output and "OK" in result.output
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["inputs"] == [{"name": "x", "shape": [4, 32], "dtype": "float32"}]
    assert manifest["outputs"][0]["name"] == "y"
    assert manifest["mode"] == "dense" and manifest["target"]["name"] == "x86"
    assert {d["node"]: d["fmt"] for d in manifest["decisions"]} == {"fc1": "dense", "fc2": "dense"}
    assert "ShrinkChannels" in manifest["passes"]
    assert (outdir / "model.so").is_file() and (outdir / "model.onnx").is_file()
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    result = run("run", str(outdir), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"))
    assert result.exit_code == 0, result.output
    y = np.load(tmp_path / "out.npz")["y"]
    from sparseforge.runtime.compare import session

    np.testing.assert_allclose(y, session(onnx.load(model)).run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
    # the Python API does the same
    import sparseforge.runtime

    out = sparseforge.runtime.load(outdir)(x=x)
    np.testing.assert_allclose(out["y"], y, rtol=1e-6)


def test_run_input_errors(tmp_path: Path) -> None:
    outdir = tmp_path / "art"
    assert run("compile", str(mlp_file(tmp_path)), "-o", str(outdir), "--dense", "--threads", "1").exit_code == 0
    np.savez(tmp_path / "bad_name.npz", z=np.zeros((4, 32), np.float32))
    np.savez(tmp_path / "bad_shape.npz", x=np.zeros((2, 32), np.float32))
    for name, message in (("bad_name.npz", "missing x; unknown z"), ("bad_shape.npz", "compiled for [4, 32]")):
        result = run("run", str(outdir), "--inputs", str(tmp_path / name), "-o", str(tmp_path / "o.npz"))
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "o.npz").exists()
    result = run("run", str(tmp_path), "--inputs", str(tmp_path / "bad_name.npz"), "-o", str(tmp_path / "o.npz"))
    assert result.exit_code == 2 and "not a sparseforge artifact" in result.output


def test_compile_refuses_to_clobber_a_foreign_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    result = run("compile", str(mlp_file(tmp_path)), "-o", str(folder), "--dense")
    assert result.exit_code == 2 and "not a sparseforge artifact" in result.output
    assert (folder / "notes.txt").read_text() == "precious"


def test_unknown_target(tmp_path: Path) -> None:
    result = run("compile", str(mlp_file(tmp_path)), "--target", "z80", "-o", str(tmp_path / "a"))
    assert result.exit_code == 2 and "unknown target 'z80'" in result.output


def test_unsupported_ops_are_listed_together(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node("FancyOp", ["h"], ["a"], name="f1", domain="com.example"),
             helper.make_node("OtherOp", ["a"], ["y"], name="f2", domain="com.example")]
    proto = make_model(nodes, [vinfo("x", [2, 4])], [vinfo("y", [2, 3])], [init("w", randn(3, 4))])
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    path = tmp_path / "custom.onnx"
    onnx.save(proto, path)
    result = run("compile", str(path), "-o", str(tmp_path / "a"), "--dense")
    assert result.exit_code == 2, result.output
    assert "com.example.FancyOp" in result.output and "com.example.OtherOp" in result.output
    assert not (tmp_path / "a").exists()


def test_bench_json(tmp_path: Path) -> None:
    result = run("bench", str(mlp_file(tmp_path)), "--threads", "1", "--rounds", "2", "--repeat", "3",
                 "--dense-only", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    engines = {r["engine"] for r in doc["results"]}
    assert engines == {"onnxruntime", "openvino", "sparseforge-dense"}, doc  # OpenVINO is in the test extra
    assert all(r["median_ms"] > 0 for r in doc["results"])
    fastest = min(r["median_ms"] for r in doc["results"] if r["engine"] in ("onnxruntime", "openvino"))
    assert all(r["speedup_vs_best_dense_peer"] == pytest.approx(fastest / r["median_ms"], rel=1e-2)
               for r in doc["results"])


def test_openvino_peer_matches_onnxruntime_and_is_optional(tmp_path: Path, monkeypatch) -> None:
    from sparseforge.driver import bench
    from sparseforge.runtime.compare import random_inputs, session

    proto = onnx.load(mlp_file(tmp_path))
    feeds = random_inputs(session(proto), 0)
    engine = bench.openvino_engine(proto, feeds, 1)
    assert engine is not None
    got = list(engine().values())[0]
    want = session(proto).run(None, feeds)[0]
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    assert bench.openvino_engine(proto, feeds, 1) is None


def test_compile_bind(tmp_path: Path) -> None:
    proto = make_model([helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
                        helper.make_node("ReduceMax", ["r", "axes"], ["y"], name="max", keepdims=0)],
                       [vinfo("x", [2, 6]), vinfo("shape", [2], onnx.TensorProto.INT64),
                        vinfo("axes", [1], onnx.TensorProto.INT64)], [vinfo("y", [3])])
    model = tmp_path / "m.onnx"
    onnx.save(proto, model)
    outdir = tmp_path / "art"
    result = run("compile", str(model), "-o", str(outdir), "--dense", "--threads", "1")
    assert result.exit_code == 2 and "--bind" in result.output and not outdir.exists(), result.output
    result = run("compile", str(model), "-o", str(outdir), "--dense", "--threads", "1", "--verify",
                 "--bind", "shape=3,4", "--bind", "axes=1")
    assert result.exit_code == 0, result.output
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.savez(tmp_path / "in.npz", x=x, shape=np.array([3, 4]), axes=np.array([1]))
    result = run("run", str(outdir), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "out.npz")["y"], x.reshape(3, 4).max(axis=1))
    np.savez(tmp_path / "other.npz", x=x, shape=np.array([4, 3]), axes=np.array([1]))
    result = run("run", str(outdir), "--inputs", str(tmp_path / "other.npz"), "-o", str(tmp_path / "o2.npz"))
    assert result.exit_code == 2 and "bound at compile time to [3, 4]" in result.output, result.output
    result = run("compile", str(model), "-o", str(tmp_path / "x"), "--bind", "nope=1")
    assert result.exit_code == 2 and "not a graph input" in result.output, result.output


def test_torch_compile_peer_runs_and_failures_are_skipped(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from sparseforge.driver import bench

    module = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    args = (torch.randn(3, 16),)
    engine, why = bench.torch_compile_engine(module, args, 1)
    assert engine is not None, why
    with torch.inference_mode():
        assert torch.allclose(engine(), module(*args), atol=1e-5)

    def broken(*_, **__):
        raise RuntimeError("no C++ compiler\nmore")

    monkeypatch.setattr(torch, "compile", broken)
    engine, why = bench.torch_compile_engine(module, args, 1)
    assert engine is None and why == "torch.compile failed: no C++ compiler"


def test_bench_check_scaling_times_every_engine_at_one_thread_too(tmp_path: Path) -> None:
    result = run("bench", str(mlp_file(tmp_path)), "--threads", "2", "--rounds", "1", "--repeat", "2",
                 "--dense-only", "--check-scaling", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    single = doc["one_thread"]
    engines = {r["engine"] for r in doc["results"]}
    assert {r["engine"] for r in single["results"]} == engines
    assert set(single["scaling"]) == engines and all(v > 0 for v in single["scaling"].values())
    assert set(single["not_faster_with_threads"]) <= engines
    from sparseforge import render

    table = render.bench_table(doc)
    assert [c.header for c in table.columns][3:5] == ["1 thread ms", "vs peer at 1 thread"]
