"""Side-by-side latency in one process: ONNX Runtime, OpenVINO, PyTorch eager and ``torch.compile``, sparseforge
dense and sparse.

Every engine runs the same inputs with the same thread count (ORT ``intra_op_num_threads``, OpenVINO
``INFERENCE_NUM_THREADS`` with the latency hint and one stream, ``torch.set_num_threads``, TVM's pool size).
Engines are interleaved in rounds; each round takes the median of ``repeat`` calls per engine and the result is the
median over rounds, which tolerates a noisy shared machine. Ratios are given against the fastest *dense peer*
(ONNX Runtime, OpenVINO, PyTorch eager, PyTorch ``torch.compile`` with inductor). OpenVINO is optional, and
``torch.compile`` runs for PyTorch sources only (it needs a C++ compiler; ``torch_compile=False`` skips it): a peer
that cannot run is listed under ``skipped`` with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from sparseforge import artifact
from sparseforge.codegen.vm import VMRunner
from sparseforge.errors import TargetError
from sparseforge.ir.frontend import load, require_static_shapes, torch_source
from sparseforge.ir.keys import step_record
from sparseforge.passes import pipelines
from sparseforge.passes.infra import Pipeline
from sparseforge.runtime.compare import random_inputs, session
from sparseforge.runtime.remote import connect, time_remote

from .compile import compile_model

DENSE_PEERS = ("onnxruntime", "openvino", "pytorch", "pytorch-compile")
_steps = logging.getLogger("sparseforge.driver.bench")


@dataclasses.dataclass
class EngineResult:
    engine: str
    median_ms: float
    rounds_ms: list[float]
    speedup_vs_best_dense_peer: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON record; times keep 6 significant digits (a microsecond-scale median stays exact to 1e-5)."""
        return {"engine": self.engine, "median_ms": _significant(self.median_ms),
                "speedup_vs_best_dense_peer": None if self.speedup_vs_best_dense_peer is None
                else _significant(self.speedup_vs_best_dense_peer),
                "rounds_ms": [_significant(r) for r in self.rounds_ms], "note": self.note}


def _significant(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def time_engines(engines: dict[str, Callable[[], Any]], *, rounds: int = 5, repeat: int = 10,
                 warmup: int = 3, max_seconds: float = 60.0, pause: float = 0.3) -> list[EngineResult]:
    """Interleaved timing: ``rounds`` x (every engine ``repeat`` times); medians in milliseconds.

    ``pause`` seconds separate engines: thread pools (TVM's, ONNX Runtime's, OpenMP's) keep spinning for a
    while after a call and would steal the cores from the next engine.
    """
    for fn in engines.values():
        for _ in range(warmup):
            fn()
    per_round: dict[str, list[float]] = {name: [] for name in engines}
    deadline = time.perf_counter() + max_seconds
    for r in range(rounds):
        step_record(_steps, r, rounds, f"round {r + 1} of {rounds}, {len(engines)} engines")
        for name, fn in engines.items():
            time.sleep(pause)
            fn()
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
            per_round[name].append(float(np.median(samples)) * 1e3)
        if r >= 1 and time.perf_counter() > deadline:
            break
    step_record(_steps, rounds, rounds, "done")
    results = [EngineResult(name, float(np.median(v)), v) for name, v in per_round.items()]
    peers = [r.median_ms for r in results if r.engine in DENSE_PEERS]
    if peers:
        best = min(peers)
        for r in results:
            r.speedup_vs_best_dense_peer = best / r.median_ms
    return results


def ort_engine(proto, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], Any]:
    sess = session(proto, threads=threads)
    return lambda: sess.run(None, feeds)


def openvino_engine(proto, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], Any] | None:
    """OpenVINO on the CPU (latency hint, one stream, ``threads`` threads), or None when it is not installed."""
    try:
        import openvino as ov  # optional peer: pip install openvino
    except ImportError:
        return None
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:  # read_model wants a file for ONNX
        path = Path(tmp) / "model.onnx"
        onnx.save(proto, str(path))
        model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                                     "INFERENCE_NUM_THREADS": str(threads)})
    request = compiled.create_infer_request()
    inputs = {name: feeds[name] for name in (i.get_any_name() for i in compiled.inputs)}
    return lambda: request.infer(inputs)


def torch_engine(module, args: tuple, threads: int) -> Callable[[], Any]:
    import torch  # optional dependency: only for PyTorch sources

    torch.set_num_threads(threads)
    module = module.eval()

    def run():
        with torch.inference_mode():
            return module(*args)

    return run


def torch_compile_engine(module, args: tuple, threads: int) -> tuple[Callable[[], Any] | None, str]:
    """``torch.compile`` (inductor, default mode) of ``module``, compiled and checked against eager on ``args``
    before timing; ``(None, why)`` when it cannot compile or disagrees."""
    import torch  # optional dependency: only for PyTorch sources

    torch.set_num_threads(threads)
    module = module.eval()
    try:
        compiled = torch.compile(module, backend="inductor")
        with torch.inference_mode():
            expected = module(*args)
            got = compiled(*args)  # the compile happens here, outside the timed rounds
        flat = [(e, g) for e, g in zip(_tensors(expected), _tensors(got))]
        if not flat or any(not torch.allclose(e, g, rtol=1e-3, atol=1e-4 * float(e.abs().max() or 1.0))
                           for e, g in flat):
            return None, "its outputs differ from PyTorch eager"
    except Exception as exc:  # noqa: BLE001 - any compiler failure makes it a skipped peer, with the reason
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return None, f"torch.compile failed: {first}"

    def run():
        with torch.inference_mode():
            return compiled(*args)

    return run, ""


def _tensors(value) -> list:
    """The tensors of a module's output (a tensor, or nested tuples/lists/dicts of them), in order."""
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return [value] if hasattr(value, "shape") else []


def artifact_engine(executable, feeds: dict[str, np.ndarray], input_names: list[str], threads: int
                    ) -> Callable[[], Any]:
    # the pool is process-wide: sized once here, since resizing it per call would be measured too
    return VMRunner(executable, threads=threads).bound([feeds[n] for n in input_names])


def pin_threads(threads: int) -> list[int] | None:
    """Pin this process (and the threads it starts) to ``threads`` CPUs; returns them (None if unsupported)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    cpus = available[: max(1, min(threads, len(available)))]
    os.sched_setaffinity(0, set(cpus))
    return cpus


def bench_model(source: Any, *, target: str = "x86", threads: int = 1, rounds: int = 5, repeat: int = 10,
                example_inputs: Any = None, input_shapes=None, sparse: bool = True, seed: int = 0,
                cost_model=None, allow_invalid_input: bool = False, torch_compile: bool = True,
                check_scaling: bool = False) -> dict[str, Any]:
    """Latency of ONNX Runtime, OpenVINO, PyTorch eager and ``torch.compile`` (PyTorch sources), sparseforge dense
    and sparse, side by side. ``check_scaling`` (with ``threads > 1``): time every engine again at 1 thread
    (``one_thread`` in the result)."""
    model = load(source, example_inputs, input_shapes=input_shapes, allow_invalid=allow_invalid_input)
    require_static_shapes(model)
    original = ir.to_proto(model)
    feeds = random_inputs(session(original), seed)
    input_names = [v.name for v in original.graph.input if v.name in feeds]
    def fresh() -> ir.Model:  # passes mutate the model (and onnx-ir shares tensors with the proto)
        return ir.from_proto(onnx.load_from_string(original.SerializeToString()))

    compiled = {"sparseforge-dense": compile_model(fresh(), None, target=target, threads=threads, dense=True)}
    if sparse:
        compiled["sparseforge-sparse"] = compile_model(fresh(), None, target=target, threads=threads,
                                                       cost_model=cost_model)
    peer = fresh()  # ONNX Runtime gets the canonicalized model (constants and BatchNorm folded): its best case
    Pipeline(pipelines.canonicalize())(peer)
    engines: dict[str, Callable[[], Any]] = {"onnxruntime": ort_engine(ir.to_proto(peer), feeds, threads)}
    skipped = {}
    openvino = openvino_engine(ir.to_proto(peer), feeds, threads)
    if openvino is None:
        skipped["openvino"] = "not installed: pip install openvino (make install installs it)"
    else:
        engines["openvino"] = openvino
    torch_model = torch_source(source, example_inputs)
    module = args = None
    if torch_model is not None:
        import torch  # optional dependency: only for PyTorch sources

        module, _ = torch_model
        args = tuple(torch.from_numpy(feeds[n].copy()) for n in input_names)
        engines["pytorch"] = torch_engine(module, args, threads)
        if torch_compile:
            engine, why = torch_compile_engine(module, args, threads)
            if engine is None:
                skipped["pytorch-compile"] = why
            else:
                engines["pytorch-compile"] = engine
        else:
            skipped["pytorch-compile"] = "not asked for (--no-torch-compile)"
    for name, result in compiled.items():
        engines[name] = artifact_engine(result.executable, feeds, input_names, threads)
    results = time_engines(engines, rounds=rounds, repeat=repeat)
    sparse_layers = [d for d in compiled.get("sparseforge-sparse", compiled["sparseforge-dense"]).decisions
                     if d["fmt"] != "dense"]
    out = {"threads": threads, "target": target, "rounds": rounds, "repeat": repeat,
           "results": [r.to_dict() for r in results], "skipped": skipped,
           "sparse_layers": len(sparse_layers),
           "compile_seconds": {k: round(v.seconds, 2) for k, v in compiled.items()}}
    if check_scaling and threads > 1:
        out["one_thread"] = _one_thread(results, peer, feeds, input_names, compiled, module, args, rounds, repeat,
                                        pytorch_compile="pytorch-compile" in engines)
    return out


def _one_thread(results: list[EngineResult], peer: ir.Model, feeds, input_names, compiled, module, args,
                rounds: int, repeat: int, *, pytorch_compile: bool) -> dict[str, Any]:
    """The same engines again at 1 thread (the process pinned to one CPU), after the N-thread rounds: medians,
    ratios against the fastest dense peer at 1 thread, and the engines whose N-thread time is not below their
    1-thread time (then the machine was busy, or the engine does not scale: read the 1-thread ratios)."""
    pin_threads(1)
    engines: dict[str, Callable[[], Any]] = {"onnxruntime": ort_engine(ir.to_proto(peer), feeds, 1)}
    openvino = openvino_engine(ir.to_proto(peer), feeds, 1)
    if openvino is not None:
        engines["openvino"] = openvino
    if module is not None:
        engines["pytorch"] = torch_engine(module, args, 1)
        if pytorch_compile:
            engine, _ = torch_compile_engine(module, args, 1)
            if engine is not None:
                engines["pytorch-compile"] = engine
    for name, result in compiled.items():
        engines[name] = artifact_engine(result.executable, feeds, input_names, 1)
    single = {r.engine: r for r in time_engines(engines, rounds=rounds, repeat=repeat)}
    threaded = {r.engine: r.median_ms for r in results}
    not_faster = sorted(name for name, r in single.items() if name in threaded and threaded[name] >= r.median_ms)
    return {"results": [r.to_dict() for r in single.values()],
            "scaling": {name: round(r.median_ms / threaded[name], 3) for name, r in single.items()
                        if name in threaded},
            "not_faster_with_threads": not_faster}


def bench(source: Any, *, target: str = "x86", threads: int = 1, rounds: int = 5, repeat: int = 10,
          rpc: str | None = None, rpc_key: str | None = None, cpu: str | None = None, input_shapes=None,
          sparse: bool = True, example_inputs: Any = None, allow_invalid_input: bool = False,
          torch_compile: bool = True, check_scaling: bool = False) -> dict[str, Any]:
    """``sparseforge bench``: on this machine (process pinned to ``threads`` CPUs) or on a device over RPC."""
    if rpc:
        return bench_remote(source, rpc, key=rpc_key, target=target, threads=threads, cpu=cpu, repeat=repeat,
                            rounds=rounds, input_shapes=input_shapes, sparse=sparse, example_inputs=example_inputs,
                            allow_invalid_input=allow_invalid_input)
    if target != "x86":
        raise TargetError(f"target '{target}' does not run on this machine",
                          hint="measure on a device with --rpc HOST:PORT (a TVM RPC server on it)")
    pinned = pin_threads(threads)
    result = bench_model(source, target=target, threads=threads, rounds=rounds, repeat=repeat,
                         input_shapes=input_shapes, sparse=sparse, example_inputs=example_inputs,
                         allow_invalid_input=allow_invalid_input, torch_compile=torch_compile,
                         check_scaling=check_scaling)
    result["pinned_cpus"] = pinned
    return result


def bench_remote(source: Any, address: str, *, key: str | None = None, target: str = "arm", threads: int = 1,
                 cpu: str | None = None, repeat: int = 10, rounds: int = 5, example_inputs: Any = None,
                 input_shapes=None, sparse: bool = True, allow_invalid_input: bool = False) -> dict[str, Any]:
    """sparseforge dense (and sparse) builds for ``target``, timed on the device behind ``address``."""
    if target not in ("x86", "arm"):
        raise TargetError(f"--rpc measures TVM runtime libraries (x86, arm), not target '{target}'",
                          hint="wasm artifacts are benchmarked with benchmarks/wasm_suite.py")
    session = connect(address, key)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        modes = [("sparseforge-dense", True)] + ([("sparseforge-sparse", False)] if sparse else [])
        for engine, dense in modes:
            out = Path(tmp) / engine
            compiled = compile_model(source, out, target=target, threads=threads, cpu=cpu, dense=dense,
                                     example_inputs=example_inputs, input_shapes=input_shapes,
                                     allow_invalid_input=allow_invalid_input)
            timing = time_remote(session, out / artifact.LIBRARY, artifact.example_arrays(compiled.manifest), number=repeat,
                                 repeat=rounds)
            results.append(EngineResult(engine, timing.median_ms, timing.runs_ms, note=f"remote {timing.device}"))
    dense_ms = results[0].median_ms
    for r in results:
        r.speedup_vs_best_dense_peer = None
        r.note += f"; {dense_ms / r.median_ms:.2f}x vs sparseforge dense"
    return {"threads": threads, "target": target, "rounds": rounds, "repeat": repeat, "rpc": address,
            "results": [r.to_dict() for r in results]}
