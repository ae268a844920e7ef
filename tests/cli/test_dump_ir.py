"""``--dump-ir``: the model after every pass loads in onnx and ONNX Runtime; compile adds Relax and kernel TIR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from click.testing import CliRunner
from helpers import init, make_model, vinfo
from onnx import helper

from sparseforge.cli import main


def _model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((64, 32)) * (rng.random((64, 32)) < 0.1)).astype(np.float32)
    w1[5] = 0.0  # a dead output channel: ShrinkChannels changes the model
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1)]
    proto = make_model(nodes, [vinfo("x", [4, 32])], [vinfo("y", [4, 8])],
                       [init("w1", w1), init("w2", rng.standard_normal((8, 64)).astype(np.float32))])
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    return path


def _check_onnx_dumps(folder: Path) -> list[dict]:
    index = json.loads((folder / "index.json").read_text())
    files = [e["file"] for e in index if e["kind"] == "onnx" and e["file"]]
    assert files[0] == "00-input.onnx" and any("ShrinkChannels" in f for f in files), files
    x = np.random.default_rng(1).standard_normal((4, 32)).astype(np.float32)
    for name in files:
        onnx.checker.check_model(onnx.load(folder / name))
        ort.InferenceSession(str(folder / name)).run(None, {"x": x})
    assert (folder / "index.md").read_text().startswith("# sparseforge IR dump")
    return index


def test_export_dump_ir(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(_model(tmp_path)), "-o", str(tmp_path / "out.onnx"),
                                       "--dump-ir", str(tmp_path / "dump")])
    assert result.exit_code == 0, result.output
    index = _check_onnx_dumps(tmp_path / "dump")
    assert any(e["note"] == "unchanged" for e in index)  # passes that changed nothing are listed, not written


def test_compile_dump_ir_has_relax_and_kernel_tir(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compile", str(_model(tmp_path)), "-o", str(tmp_path / "art"), "--target",
                                       "arm", "--dump-ir", str(tmp_path / "dump")])
    assert result.exit_code == 0, result.output
    index = _check_onnx_dumps(tmp_path / "dump")
    names = {e["name"] for e in index}
    assert {"relax-imported", "relax-optimized"} <= names
    relax_text = (tmp_path / "dump" / "relax-imported.txt").read_text()
    assert "R.function" in relax_text or "def main" in relax_text
    tirs = [e for e in index if e["kind"] == "tir"]
    assert tirs and all((tmp_path / "dump" / e["file"]).read_text().strip() for e in tirs)
