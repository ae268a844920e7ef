"""Scaling with graph size (issue 15): wall time and peak memory of ``inspect``, ``export`` and ``compile --dense``.

Two generated families, written as ONNX files so every tool reads the same bytes:

* ``chain``: ``MatMul`` followed by N ``Relu`` (the issue's reproduction);
* ``transformer``: a pre-LN encoder built from a config (``layers`` x [LayerNorm, Q/K/V MatMul+Add, Reshape/Transpose
  to heads, scaled Softmax attention, output projection, residual Add, LayerNorm, FFN with Gelu, residual Add]),
  33 nodes a layer, the op mix a PyTorch export has; the number of layers sets the size.

Each command runs as a fresh ``sparseforge`` process (``os.wait4`` gives its peak RSS); beside it, ONNX Runtime's
session creation time (default graph optimizations) on the same file. The growth exponent is the least-squares
slope of log(time) against log(nodes) from 4k nodes up. The machine is shared: read exponents and ratios.

    .venv/bin/python benchmarks/scaling.py                                   # chains 1k..100k, transformers 1k..16k
    .venv/bin/python benchmarks/scaling.py --family chain --sizes 1000 4000 16000 --commands inspect
    .venv/bin/python benchmarks/scaling.py --bert-layers 24                  # + compile --dense of a BERT-base-shaped encoder
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLI = str(pathlib.Path(sys.executable).with_name("sparseforge"))
DEFAULT_CHAIN_SIZES = (1000, 4000, 16000, 64000, 100000)
DEFAULT_TRANSFORMER_SIZES = (1000, 4000, 16000)


def chain(n: int) -> onnx.ModelProto:
    """``MatMul`` then ``n - 1`` ``Relu``: ``n`` nodes."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h0"], name="fc")]
    nodes += [helper.make_node("Relu", [f"h{i}"], [f"h{i + 1}"], name=f"relu{i}") for i in range(n - 1)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info(f"h{n - 1}", TensorProto.FLOAT, [1, 64])], [w])
    return _model(graph)


def transformer(layers: int, hidden: int = 32, heads: int = 4, ffn: int = 64, seq: int = 8) -> onnx.ModelProto:
    """A pre-LN Transformer encoder of ``layers`` layers in plain ONNX ops (what a PyTorch export contains)."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, array) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=f"n_{name}", **attrs))
        return name

    def linear(x: str, prefix: str, k: int, n: int) -> str:
        w = const(f"{prefix}.weight", (rng.standard_normal((k, n)) / math.sqrt(k)).astype(np.float32))
        b = const(f"{prefix}.bias", rng.standard_normal(n).astype(np.float32) * 0.1)
        return node("Add", [node("MatMul", [x, w], f"{prefix}.mm"), b], f"{prefix}.out")

    def layer_norm(x: str, prefix: str) -> str:
        g = const(f"{prefix}.weight", np.ones(hidden, np.float32))
        b = const(f"{prefix}.bias", np.zeros(hidden, np.float32))
        return node("LayerNormalization", [x, g, b], f"{prefix}.out", axis=-1, epsilon=1e-5)

    dh = hidden // heads
    heads_shape = const("heads_shape", np.array([1, seq, heads, dh], np.int64))
    flat_shape = const("flat_shape", np.array([1, seq, hidden], np.int64))
    scale = const("scale", np.array(1.0 / math.sqrt(dh), np.float32))
    sqrt2 = const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = const("one", np.array(1.0, np.float32))
    half = const("half", np.array(0.5, np.float32))
    x = "x"
    for i in range(layers):
        p = f"layers.{i}"
        h = layer_norm(x, f"{p}.norm1")
        q, k, v = (node("Transpose", [node("Reshape", [linear(h, f"{p}.attn.{t}", hidden, hidden), heads_shape],
                                           f"{p}.{t}.heads")], f"{p}.{t}.t", perm=perm)
                   for t, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])))
        scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scaled")
        attn = node("MatMul", [node("Softmax", [scores], f"{p}.softmax", axis=-1), v], f"{p}.ctx")
        ctx = node("Reshape", [node("Transpose", [attn], f"{p}.ctx.t", perm=[0, 2, 1, 3]), flat_shape], f"{p}.ctx.flat")
        x = node("Add", [x, linear(ctx, f"{p}.attn.out", hidden, hidden)], f"{p}.res1")
        h = linear(layer_norm(x, f"{p}.norm2"), f"{p}.ffn.fc1", hidden, ffn)
        gelu = node("Mul", [node("Mul", [h, half], f"{p}.gelu.half"),
                            node("Add", [node("Erf", [node("Div", [h, sqrt2], f"{p}.gelu.div")], f"{p}.gelu.erf"), one],
                                 f"{p}.gelu.add")], f"{p}.gelu")
        x = node("Add", [x, linear(gelu, f"{p}.ffn.fc2", ffn, hidden)], f"{p}.res2")
    graph = helper.make_graph(nodes, "transformer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, hidden])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, seq, hidden])], inits)
    return _model(graph)


def transformer_of_size(nodes: int, **config) -> onnx.ModelProto:
    per_layer = len(transformer(1, **config).graph.node)
    return transformer(max(1, round(nodes / per_layer)), **config)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def run_measured(cmd: list[str], timeout: float) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, status, usage = _wait4(proc, timeout)
    except TimeoutError:
        proc.kill()
        proc.wait()
        return float("inf"), float("nan"), -9
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  {' '.join(cmd[:3])}... exited {code}: {proc.stderr.read().decode()[-400:]}", file=sys.stderr)
    return seconds, usage.ru_maxrss / 1024, code


def _wait4(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.02)


def ort_session_seconds(path: str, timeout: float) -> float:
    code = ("import sys, time, onnxruntime as ort; t = time.perf_counter(); "
            "ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider']); print(time.perf_counter() - t)")
    try:
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=timeout, check=False)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return float("nan")


BERT_FACTORY = """import importlib.util
spec = importlib.util.spec_from_file_location("examples_models", {models!r})
models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(models)


def bert():
    return models.bert_encoder(layers={layers})
"""


def bert_compile(layers: int, work: str, timeout: float) -> dict:
    """``compile --dense`` of examples/models.py's BERT-base-shaped encoder with ``layers`` layers, twice: the first
    run fills the calibration/build caches (cold), the second is the warm-cache time the issue asks for."""
    factory = os.path.join(work, "bert_factory.py")
    pathlib.Path(factory).write_text(BERT_FACTORY.format(models=str(ROOT / "examples" / "models.py"), layers=layers))
    row: dict = {"family": "bert_encoder", "layers": layers}
    for label in ("cold", "warm"):
        cmd = [CLI, "compile", f"{factory}:bert", "--dense", "-o", os.path.join(work, f"bert_{label}")]
        seconds, mib, code = run_measured(cmd, timeout)
        row[f"compile_{label}_s"], row[f"compile_{label}_mib"], row[f"compile_{label}_rc"] = seconds, mib, code
        print(json.dumps(row), flush=True)
    return row


def command_line(command: str, path: str, work: str) -> list[str]:
    if command == "inspect":
        return [CLI, "inspect", path, "--json"]
    if command == "export":
        return [CLI, "export", path, "-o", os.path.join(work, "out.onnx")]
    if command == "compile":
        return [CLI, "compile", path, "--dense", "-o", os.path.join(work, "artifact")]
    raise ValueError(command)


def exponent(sizes: list[int], seconds: list[float], smallest: int = 3900) -> float:
    pairs = [(math.log(n), math.log(t)) for n, t in zip(sizes, seconds) if n >= smallest and math.isfinite(t) and t > 0]
    if len(pairs) < 2:
        return float("nan")
    xs, ys = np.array(pairs).T
    return float(np.polyfit(xs, ys, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=("chain", "transformer", "both"), default="both")
    ap.add_argument("--sizes", type=int, nargs="*", help="node counts (default per family)")
    ap.add_argument("--commands", nargs="*", default=["inspect", "export", "compile"])
    ap.add_argument("--bert-layers", type=int, default=0, help="also compile --dense a BERT-base-shaped encoder "
                    "(examples/models.py:bert_encoder) with this many layers, twice (cold then warm cache)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    families = ("chain", "transformer") if args.family == "both" else (args.family,)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for family in families:
            sizes = args.sizes or (DEFAULT_CHAIN_SIZES if family == "chain" else DEFAULT_TRANSFORMER_SIZES)
            for n in sizes:
                proto = chain(n) if family == "chain" else transformer_of_size(n)
                path = os.path.join(work, f"{family}{n}.onnx")
                onnx.save(proto, path)
                row = {"family": family, "nodes": len(proto.graph.node),
                       "ort_session_s": ort_session_seconds(path, args.timeout)}
                for command in args.commands:
                    if command == "compile" and family == "transformer":
                        continue  # TVM's build of thousands of layers measures TVM, not sparseforge
                    seconds, mib, code = run_measured(command_line(command, path, work), args.timeout)
                    row[f"{command}_s"], row[f"{command}_mib"], row[f"{command}_rc"] = seconds, mib, code
                print(json.dumps(row), flush=True)
                results.append(row)
        if args.bert_layers:
            results.append(bert_compile(args.bert_layers, work, args.timeout * 4))
    print()
    print(markdown(results, args.commands))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))


def markdown(results: list[dict], commands: list[str]) -> str:
    lines = []
    for family in ("chain", "transformer"):
        rows = [r for r in results if r["family"] == family]
        if not rows:
            continue
        cmds = [c for c in commands if f"{c}_s" in rows[0]]
        head = " | ".join(f"{c} s | {c} MiB" for c in cmds)
        lines += [f"**{family}**", "", f"| nodes | {head} | ORT session s |",
                  "|---:|" + "---:|" * (2 * len(cmds) + 1)]
        for r in rows:
            cells = " | ".join(f"{r[f'{c}_s']:.2f} | {r[f'{c}_mib']:.0f}" for c in cmds)
            lines.append(f"| {r['nodes']:,} | {cells} | {r['ort_session_s']:.2f} |")
        sizes = [r["nodes"] for r in rows]
        fits = ", ".join(f"{c} {exponent(sizes, [r[f'{c}_s'] for r in rows]):.2f}" for c in cmds)
        fits += f", ORT session {exponent(sizes, [r['ort_session_s'] for r in rows]):.2f}"
        lines += ["", f"Growth exponent from 4k nodes: {fits}", ""]
    for r in results:
        if r["family"] == "bert_encoder":
            lines.append(f"BERT-base-shaped encoder, {r['layers']} layers, `compile --dense`: cold "
                         f"{r['compile_cold_s']:.1f} s, warm cache {r['compile_warm_s']:.1f} s "
                         f"(peak {r['compile_warm_mib']:.0f} MiB)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
