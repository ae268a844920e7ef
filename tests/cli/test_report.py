"""`sparseforge report`: one self-contained HTML file with every layer, a picture of every weight and all notes."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from helpers import init, make_model, vinfo
from onnx import helper

from sparseforge.cli import main
from sparseforge.report import layer_nodes, pattern


def _model(tmp_path: Path) -> Path:
    """A 90%-sparse layer, a low-rank one, a layer with a name rich and HTML would both misread, a 1x1 conv."""
    rng = np.random.default_rng(0)
    sparse = (rng.standard_normal((64, 48)) * (rng.random((64, 48)) < 0.1)).astype(np.float32)
    low = (rng.standard_normal((64, 2)) @ rng.standard_normal((2, 64))).astype(np.float32)
    odd = rng.standard_normal((8, 64)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
             helper.make_node("MatMul", ["h", "w2"], ["h2"], name="fc2"),
             helper.make_node("Gemm", ["h2", "w3"], ["y"], name="x[/y]<b>&", transB=1)]
    proto = make_model(nodes, [vinfo("x", [4, 48])], [vinfo("y", [4, 8])],
                       [init("w1", sparse), init("w2", low), init("w3", odd)])
    path = tmp_path / "model.onnx"
    onnx.save(proto, path)
    return path


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.external = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href") and value and re.match(r"(https?:)?//", value):
                self.external.append(value)


def test_report_is_self_contained_and_lists_every_layer(tmp_path: Path) -> None:
    model = _model(tmp_path)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    inspected = json.loads(CliRunner().invoke(main, ["inspect", str(model), "--json"]).output)
    assert layer_nodes(page) == [layer["node"] for layer in inspected["layers"]]
    checker = _Checker()
    checker.feed(page)
    assert not checker.external and "link" not in checker.tags
    assert page.count("<svg") >= 2 * len(inspected["layers"])  # pattern + bars per weight, plus the plots
    assert "x[/y]&lt;b&gt;&amp;" in page and "<b>&" not in page
    for report in inspected["passes"]:
        for note in report["diagnostics"]:
            assert note["message"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:60] in page


def test_report_with_an_artifact_shows_decisions(tmp_path: Path) -> None:
    model = _model(tmp_path)
    artifact = tmp_path / "art"
    compiled = CliRunner().invoke(main, ["compile", str(model), "-o", str(artifact), "--dense"])
    assert compiled.exit_code == 0, compiled.output
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(model), "-o", str(out), "--artifact", str(artifact)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "sparse kernels disabled (--dense)" in page and ">kernel<" in page
    # the artifact was run: measured latency, ONNX Runtime beside it, the kernels and where the time goes
    assert "measured speedup over ONNX Runtime" in page and "Kernels (measured)" in page
    assert "where the measured time goes" in page and "dense conv / matmul" in page
    quiet = CliRunner().invoke(main, ["report", str(model), "-o", str(out), "--artifact", str(artifact),
                                      "--no-profile"])
    assert quiet.exit_code == 0 and "measured speedup" not in out.read_text()


def profiled_report(tmp_path: Path) -> Path:
    """The report of :func:`_model` with synthetic decisions and a synthetic measured profile."""
    from sparseforge import api
    from sparseforge.report import write

    model = _model(tmp_path)
    inspected = api.inspect(str(model))
    decisions = [{"node": "fc1", "fmt": "csr", "kernel": "csr", "predicted_s": 2e-5, "dense_s": 8e-5, "reason": "r"},
                 {"node": "fc2", "fmt": "dense", "kernel": "dense", "dense_s": 5e-5, "reason": "r"}]
    profile = {"latency_s": 2e-4, "threads": 1, "onnxruntime_s": 5e-4, "measured_speedup": 2.5,
               "by_category": {"sparse layers": 3e-5, "dense conv / matmul": 1e-4, "layout transforms": 1e-5},
               "by_node": {"fc1": 3e-5},
               "kernels": [{"kernel": "sf_fc1", "category": "sparse layers", "seconds": 3e-5, "calls": 1,
                            "node": "fc1"}]}
    return write(inspected, tmp_path / "r.html", manifest={"decisions": decisions, "target": {"name": "x86"}},
                 profile=profile)


def test_profile_shows_measured_time_per_layer_and_predicted_against_measured(tmp_path: Path) -> None:
    """Layers with their own kernel get a measured time in the table and a point in the predicted-vs-measured
    plots; the summary states the measured speedup."""
    page = profiled_report(tmp_path).read_text()
    assert "measured speedup over ONNX Runtime" in page and "2.50x" in page
    assert "per layer: predicted vs measured speedup" in page and "per layer: predicted vs measured kernel time" in page
    row = re.search(r'<tr id="layer-fc1">(.*?)</tr>', page, flags=re.S).group(1)
    assert ">0.03<" in row  # measured ms of fc1


def test_report_refuses_a_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", str(_model(tmp_path)), "-o", str(tmp_path / "r.html"),
                                       "--artifact", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "manifest" in result.output
    assert not (tmp_path / "r.html").exists()


def test_pattern_is_exact_when_small_and_block_density_when_large() -> None:
    small = np.eye(5, dtype=np.float32)
    assert np.array_equal(pattern(small), small)
    big = np.zeros((1000, 600), np.float32)
    big[:500] = 1.0
    picture = pattern(big, side=100)
    assert picture.shape == (100, 100) and picture[:50].min() == 1.0 and picture[50:].max() == 0.0


def test_model_explorer_node_data_validates_with_its_builder(tmp_path: Path) -> None:
    from model_explorer import node_data_builder as ndb

    model = _model(tmp_path)
    artifact = tmp_path / "art"
    assert CliRunner().invoke(main, ["compile", str(model), "-o", str(artifact), "--target", "arm"]).exit_code == 0
    folder = tmp_path / "overlays"
    result = CliRunner().invoke(main, ["report", str(model), "-o", str(tmp_path / "r.html"), "--artifact",
                                       str(artifact), "--node-data", str(folder)])
    assert result.exit_code == 0, result.output
    assert "--node_data_paths=" in result.output
    original = {n.name for n in onnx.load(model).graph.node}
    compiled = {n.name for n in onnx.load(artifact / "model.onnx").graph.node}
    for name in ("density", "kernel", "speedup"):
        doc = json.loads((folder / f"{name}.json").read_text())
        ((graph_id, data),) = doc.items()
        assert graph_id == onnx.load(model).graph.name
        built = ndb.ModelNodeData(graphsData={graph_id: ndb.GraphNodeData(
            name=data["name"], results={k: ndb.NodeDataResult(**v) for k, v in data["results"].items()},
            thresholds=[ndb.ThresholdItem(**t) for t in data.get("thresholds", [])],
            gradient=[ndb.GradientItem(**g) for g in data.get("gradient", [])],
            showExpandedSummaryOnGroupNode=data.get("showExpandedSummaryOnGroupNode", False))})
        rebuilt = json.loads(built.to_json_string())[graph_id]  # the builder writes these fields (and defaults)
        assert {k: rebuilt[k] for k in data} == data
        assert set(data["results"]) <= (original if name == "density" else compiled)


def test_compile_and_export_write_the_report_with_their_pass_timeline(tmp_path: Path) -> None:
    model = _model(tmp_path)
    out = tmp_path / "compile.html"
    result = CliRunner().invoke(main, ["compile", str(model), "-o", str(tmp_path / "art"), "--target", "arm",
                                       "--report", str(out), "--dump-ir", str(tmp_path / "dump")])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for name in ("ShrinkChannels", "LowRank", "DecideFormat", "Sparsify"):
        assert f"<td>{name}</td>" in page
    assert "<summary>+1 / -0</summary><p>added: fc2/low_rank</p>" in page  # LowRank added the thin product
    assert 'href="dump/' in page and ">kernel<" in page
    exported = tmp_path / "export.html"
    result = CliRunner().invoke(main, ["export", str(model), "-o", str(tmp_path / "o.onnx"), "--report",
                                       str(exported)])
    assert result.exit_code == 0, result.output
    assert "<td>LowRank</td>" in exported.read_text()
