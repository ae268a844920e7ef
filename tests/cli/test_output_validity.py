"""Every file sparseforge writes is valid: a seeded corpus of malformed inputs (byte- and protobuf-level mutants of
small CNN / MLP models) through ``export`` and ``prune``.

Contract checked on every run (``inspect`` too, which writes nothing): exit 0 => the written file passes the ONNX checker (full shape inference) and loads
in ONNX Runtime; exit != 0 => nothing is written; never a traceback; exit 3 (a bug) never; each run within a time
bound. Plus the input check itself: an invalid input is refused up front (exit 2, nothing written) unless
``--allow-invalid-input``, and then the output is still checked.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import init, make_model, randn, vinfo
from onnx import TensorProto, helper

from sparseforge.cli import main
from sparseforge.ir.validate import written_file_problem

SEED = 20261202
MUTANTS = 300
TIME_BOUND_S = 30.0


def cnn() -> onnx.ModelProto:
    w1 = randn(8, 3, 3, 3)
    w1[[1, 5]] = 0
    w2 = randn(4, 8, 1, 1, seed=2)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y0"], name="conv2"),
             helper.make_node("GlobalAveragePool", ["y0"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    return make_model(nodes, [vinfo("x", [1, 3, 8, 8])], [vinfo("y", [1, 5])],
                      [init("w1", w1), init("b1", randn(8, seed=1)), init("w2", w2), init("w3", randn(5, 4, seed=3)),
                       init("b3", randn(5, seed=4))])


def mlp() -> onnx.ModelProto:
    w1 = randn(16, 32)
    w1[:, [2, 7]] = 0
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    return make_model(nodes, [vinfo("x", [2, 16])], [vinfo("y", [2, 8])],
                      [init("w1", w1), init("b1", randn(32, seed=1)), init("w2", randn(32, 8, seed=2))])


# ------------------------------------------------------------------------------------------ mutations


def _bytes_flip(rng, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(0, len(buf)))
        buf[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def _bytes_truncate(rng, data: bytes) -> bytes:
    return data[: int(rng.integers(1, len(data)))]


def _bytes_insert(rng, data: bytes) -> bytes:
    i = int(rng.integers(0, len(data)))
    return data[:i] + rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes() + data[i:]


def _proto_dims(rng, m: onnx.ModelProto) -> None:
    t = m.graph.initializer[int(rng.integers(0, len(m.graph.initializer)))]
    if t.dims:
        t.dims[int(rng.integers(0, len(t.dims)))] = int(rng.choice([0, 1, 3, 7, 1 << 20, 1 << 40, (1 << 63) - 1]))


def _proto_dtype(rng, m: onnx.ModelProto) -> None:
    t = m.graph.initializer[int(rng.integers(0, len(m.graph.initializer)))]
    t.data_type = int(rng.choice([TensorProto.UNDEFINED, TensorProto.STRING, TensorProto.DOUBLE,
                                  TensorProto.FLOAT16, TensorProto.INT8, TensorProto.FLOAT8E4M3FN,
                                  TensorProto.BOOL, TensorProto.INT64]))


def _proto_raw(rng, m: onnx.ModelProto) -> None:
    t = m.graph.initializer[int(rng.integers(0, len(m.graph.initializer)))]
    raw = t.raw_data
    choice = int(rng.integers(0, 3))
    t.raw_data = raw[: len(raw) // 2] if choice == 0 else (raw + b"\x00" * 4 if choice == 1 else raw[:-1])


def _proto_attr(rng, m: onnx.ModelProto) -> None:
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return
    attr = nodes[int(rng.integers(0, len(nodes)))].attribute[0]
    if attr.ints:
        attr.ints[int(rng.integers(0, len(attr.ints)))] = int(rng.choice([-5, 0, 3, 1 << 31]))
    elif attr.type == onnx.AttributeProto.INT:
        attr.i = int(rng.choice([-5, 0, 2, 1 << 31]))


def _proto_rewire(rng, m: onnx.ModelProto) -> None:
    node = m.graph.node[int(rng.integers(0, len(m.graph.node)))]
    node.input[int(rng.integers(0, len(node.input)))] = str(rng.choice(["missing", "x", "y", ""]))


def _proto_drop(rng, m: onnx.ModelProto) -> None:
    choice = int(rng.integers(0, 3))
    if choice == 0:
        del m.graph.initializer[int(rng.integers(0, len(m.graph.initializer)))]
    elif choice == 1:
        del m.graph.node[int(rng.integers(0, len(m.graph.node)))]
    else:
        m.graph.node[int(rng.integers(0, len(m.graph.node)))].op_type = str(rng.choice(["Nope", "Relu", "Conv"]))


def _proto_opset(rng, m: onnx.ModelProto) -> None:
    m.opset_import[0].version = int(rng.choice([1, 6, 30, 1000]))
    if rng.random() < 0.5:
        m.ir_version = int(rng.choice([1, 3, 99]))


PROTO_MUTATIONS = (_proto_dims, _proto_dtype, _proto_raw, _proto_attr, _proto_rewire, _proto_drop, _proto_opset)
BYTE_MUTATIONS = (_bytes_flip, _bytes_truncate, _bytes_insert)


def mutants(n: int, seed: int):
    rng = np.random.default_rng(seed)
    bases = (cnn(), mlp())
    for i in range(n):
        base = bases[i % len(bases)]
        if rng.random() < 0.35:
            fn = BYTE_MUTATIONS[int(rng.integers(0, len(BYTE_MUTATIONS)))]
            yield f"{i}-{fn.__name__}", fn(rng, base.SerializeToString())
        else:
            m = onnx.ModelProto()
            m.CopyFrom(base)
            fn = PROTO_MUTATIONS[int(rng.integers(0, len(PROTO_MUTATIONS)))]
            fn(rng, m)
            yield f"{i}-{fn.__name__}", m.SerializeToString()


def _run(*args: str):
    start = time.perf_counter()
    result = CliRunner().invoke(main, list(args))
    return result, time.perf_counter() - start


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.slow
def test_fuzzed_inputs_never_leave_an_invalid_file(tmp_path: Path) -> None:
    exits: dict[int, int] = {}
    failures = []
    for name, data in mutants(MUTANTS, SEED):
        src = tmp_path / f"{name}.onnx"
        src.write_bytes(data)
        for command in (["export"], ["prune", "--method", "magnitude", "--sparsity", "0.5"], ["inspect"]):
            out = tmp_path / f"{name}-{command[0]}.out.onnx"
            output_args = ["-o", str(out)] if command[0] != "inspect" else []
            result, seconds = _run(command[0], str(src), *output_args, *command[1:])
            exits[result.exit_code] = exits.get(result.exit_code, 0) + 1
            where = f"{name} {command[0]} (exit {result.exit_code}, {seconds:.1f} s)"
            if "Traceback" in result.output or (result.exception and not isinstance(result.exception, SystemExit)):
                failures.append(f"{where}: traceback / uncaught {result.exception!r}")
            if result.exit_code not in (0, 2):
                failures.append(f"{where}: {result.output.strip()[:300]}")
            if seconds > TIME_BOUND_S:
                failures.append(f"{where}: took longer than {TIME_BOUND_S} s")
            if result.exit_code == 0 and command[0] != "inspect":
                problem = written_file_problem(out)
                if problem is not None:
                    failures.append(f"{where}: exit 0 with an invalid file: {problem}")
            elif out.exists():
                failures.append(f"{where}: exit {result.exit_code} but {out.name} was written")
            leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
            if leftovers:
                failures.append(f"{where}: temporary files left: {leftovers}")
    assert not failures, "\n".join(failures[:40]) + f"\nexit codes: {exits}"
    assert exits.get(0, 0) > 0 and exits.get(2, 0) > 0, exits  # the corpus exercises both outcomes


def test_invalid_input_is_refused_up_front_unless_allowed(tmp_path: Path) -> None:
    model = mlp()
    model.graph.node[0].input[1] = "undefined_weight"  # the checker: input not produced by any node
    src = tmp_path / "bad.onnx"
    src.write_bytes(model.SerializeToString())
    out = tmp_path / "out.onnx"
    result, _ = _run("export", str(src), "-o", str(out))
    assert result.exit_code == 2, result.output
    assert "the input model is not valid ONNX" in result.output and "--allow-invalid-input" in result.output
    assert not out.exists()
    result, _ = _run("export", str(src), "-o", str(out), "--allow-invalid-input")
    assert result.exit_code in (0, 2), result.output
    assert out.exists() == (result.exit_code == 0)
    if out.exists():
        assert written_file_problem(out) is None


def test_written_files_pass_the_checker_and_load_in_onnxruntime(tmp_path: Path) -> None:
    src = tmp_path / "cnn.onnx"
    onnx.save(cnn(), src)
    for args in (["export", "-o", str(tmp_path / "e.onnx")],
                 ["export", "--sparse-storage", "-o", str(tmp_path / "s.onnx")],
                 ["prune", "--method", "channel", "--sparsity", "0.5", "-o", str(tmp_path / "p.onnx")]):
        result, _ = _run(args[0], str(src), *args[1:])
        assert result.exit_code == 0, result.output
        assert written_file_problem(args[args.index("-o") + 1]) is None


def test_a_rewrite_that_breaks_the_model_is_a_bug_naming_the_pass(tmp_path: Path, monkeypatch) -> None:
    """If a pass produced an invalid model, nothing is written and the exit is 3 with the pass's name."""
    from sparseforge.passes.rewrites import shrink_channels

    original_run = shrink_channels.ShrinkChannelsPass.run

    def broken_run(self, model, report):
        original_run(self, model, report)
        node = next(iter(model.graph))
        node.op_type = "NotAnOnnxOp"  # an invalid model

    monkeypatch.setattr(shrink_channels.ShrinkChannelsPass, "run", broken_run)
    src = tmp_path / "cnn.onnx"
    onnx.save(cnn(), src)
    out = tmp_path / "out.onnx"
    result, _ = _run("export", str(src), "-o", str(out))
    assert result.exit_code == 3, result.output
    assert "after pass ShrinkChannels" in result.output and "nothing was written" in result.output
    assert not out.exists()
