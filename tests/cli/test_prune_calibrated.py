"""`sparseforge prune --method wanda|sparsegpt --calibration ...`: data-aware pruning, the held-out accuracy
report, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from helpers import init, make_model, vinfo
from onnx import helper, numpy_helper

from sparseforge.cli import main


def _mlp(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2[/x]", transB=1)]
    inits = [init("w1", rng.standard_normal((32, 24)).astype(np.float32)),
             init("b1", rng.standard_normal(32).astype(np.float32)),
             init("w2", rng.standard_normal((10, 32)).astype(np.float32))]
    path = tmp_path / "mlp.onnx"
    onnx.save(make_model(nodes, [vinfo("x", [4, 24])], [vinfo("y", [4, 10])], inits), path)
    return path


def _data(tmp_path: Path, n: int = 64) -> Path:
    rng = np.random.default_rng(1)
    # correlated features of uneven scale (as activations have)
    x = (rng.standard_normal((n, 8)) @ rng.standard_normal((8, 24)) * np.linspace(0.1, 3, 24)).astype(np.float32)
    path = tmp_path / "calib.npz"
    np.savez(path, x=x)
    return path


def test_sparsegpt_and_wanda_report_accuracy_on_held_out_samples(tmp_path: Path) -> None:
    model, data = _mlp(tmp_path), _data(tmp_path)
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        out = tmp_path / f"{method}.onnx"
        result = CliRunner().invoke(main, ["prune", str(model), "-o", str(out), "--method", method, "--sparsity",
                                           "0.6", "--calibration", str(data), "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["approximate"] and doc["calibration"] == {"source": str(data), "random": False,
                                                               "calibration_samples": 48, "heldout_samples": 16}
        (acc,) = doc["accuracy"]
        assert acc["output"] == "y" and acc["samples"] == 16 and 0 <= acc["top1_agreement"] <= 1
        errors[method] = acc["relative_l2"]
        if method != "magnitude":
            assert set(doc["layer_errors"]) == {"fc1", "fc2[/x]"}
        weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
        w1 = next(v for k, v in weights.items() if v.shape == (32, 24))
        assert abs((w1 == 0).mean() - 0.6) < 0.02
    assert errors["sparsegpt"] < errors["magnitude"] and errors["wanda"] < errors["magnitude"]
    text = CliRunner().invoke(main, ["prune", str(model), "-o", str(tmp_path / "t.onnx"), "--method", "sparsegpt",
                                     "--pattern", "nm", "--calibration", str(data)])
    assert text.exit_code == 0, text.output
    assert "APPROXIMATE" in text.output and "held-out" in text.output and "fc2[/x]" in text.output.replace("\n", "")
    w1 = numpy_helper.to_array(next(t for t in onnx.load(tmp_path / "t.onnx").graph.initializer
                                    if tuple(t.dims) == (32, 24)))
    assert ((w1.reshape(32, 6, 4) != 0).sum(axis=2) <= 2).all()


def test_refusals_and_random_calibration(tmp_path: Path) -> None:
    model = _mlp(tmp_path)
    no_data = CliRunner().invoke(main, ["prune", str(model), "-o", str(tmp_path / "o.onnx"), "--method", "wanda",
                                        "--sparsity", "0.5"])
    assert no_data.exit_code == 2 and "needs calibration data" in no_data.output
    assert not (tmp_path / "o.onnx").exists()
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((8, 23), np.float32))
    wrong = CliRunner().invoke(main, ["prune", str(model), "-o", str(tmp_path / "o.onnx"), "--method", "sparsegpt",
                                      "--sparsity", "0.5", "--calibration", str(bad)])
    assert wrong.exit_code == 2 and "expected [samples, 24]" in wrong.output and "Traceback" not in wrong.output
    assert not (tmp_path / "o.onnx").exists()
    rnd = CliRunner().invoke(main, ["prune", str(model), "-o", str(tmp_path / "r.onnx"), "--method", "sparsegpt",
                                    "--sparsity", "0.5", "--calibration", "random:16"])
    assert rnd.exit_code == 0, rnd.output
    assert "RANDOM inputs" in rnd.output and "calibrated on random inputs" in rnd.output
    glob = CliRunner().invoke(main, ["prune", str(model), "-o", str(tmp_path / "g.onnx"), "--method", "wanda",
                                     "--sparsity", "0.5", "--global", "--calibration", "random"])
    assert glob.exit_code == 2 and "--global" in glob.output


def test_compress_cli(tmp_path: Path) -> None:
    model, data = _mlp(tmp_path), _data(tmp_path, n=96)
    out = tmp_path / "c.onnx"
    result = CliRunner().invoke(main, ["compress", str(model), "-o", str(out), "--calibration", str(data),
                                       "--target", "arm", "--max-output-error", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["approximate"] and doc["calibration_error"] <= 0.5 and doc["accuracy"][0]["samples"] == 24
    assert {r["node"] for r in doc["layers"]} == {"fc1", "fc2[/x]"} and out.exists()
    text = CliRunner().invoke(main, ["compress", str(model), "-o", str(out), "--calibration", str(data),
                                     "--target", "arm", "--speedup", "1.5"])
    assert text.exit_code == 0, text.output
    assert "APPROXIMATE" in text.output and "predicted speedup" in text.output
    both = CliRunner().invoke(main, ["compress", str(model), "-o", str(tmp_path / "x.onnx"), "--calibration",
                                     str(data), "--target", "arm"])
    assert both.exit_code == 2 and "exactly one goal" in both.output and not (tmp_path / "x.onnx").exists()


def test_sequential_sparsegpt_prunes_stage_by_stage(tmp_path: Path) -> None:
    """``--sequential``: one statistics pass per stage (fc1, then fc2 from fc1's pruned output), the written
    weights as sparse as asked: fc1 as one-shot prunes it (same dense statistics), fc2 differently."""
    model, data = _mlp(tmp_path), _data(tmp_path)
    errors, written = {}, {}
    for flags in ([], ["--sequential"]):
        out = tmp_path / f"seq{len(flags)}.onnx"
        result = CliRunner().invoke(main, ["prune", str(model), "-o", str(out), "--method", "sparsegpt", "--sparsity",
                                           "0.8", "--calibration", str(data), "--json", *flags])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        (acc,) = doc["accuracy"]
        errors[bool(flags)] = acc["relative_l2"]
        weights = [numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer]
        for shape in ((32, 24), (10, 32)):
            w = next(v for v in weights if v.shape == shape)
            assert abs((w == 0).mean() - 0.8) < 0.02
            written[bool(flags), shape] = w
    np.testing.assert_array_equal(written[True, (32, 24)], written[False, (32, 24)])
    assert not np.array_equal(written[True, (10, 32)], written[False, (10, 32)])
    assert all(0 < e < 1 for e in errors.values()), errors


def test_sequential_needs_a_data_method(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["prune", str(_mlp(tmp_path)), "-o", str(tmp_path / "o.onnx"), "--method",
                                       "magnitude", "--sparsity", "0.5", "--sequential"])
    assert result.exit_code == 2 and "--sequential" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.onnx").exists()
