"""Dense model latency: sparseforge's TVM build vs ONNX Runtime and PyTorch eager, side by side.

For each model (``bert_encoder``: 12-layer BERT-base-shaped encoder, seq 128, batch 1;
``mobilenetv2``: 224x224, batch 1) and thread count, every peer runs in this one process with its
threads pinned (ORT ``intra_op_num_threads``, TVM thread pool size, ``torch.set_num_threads``),
in interleaved rounds (short turns, so a burst of load from another process hits every peer);
the reported latency is the median over all timed runs. Ratios are to the fastest peer
(1.00 = fastest). The machine is shared: read ratios, not absolute times.

    .venv/bin/python benchmarks/dense_models.py                       # both models, 1 and 2 threads
    .venv/bin/python benchmarks/dense_models.py --models mobilenetv2 --threads 1 --profile
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sparseforge.codegen import build as cg, vm  # noqa: E402  (sets TVM_NUM_THREADS before TVM starts)
from sparseforge.codegen.cpu_target import detect_x86  # noqa: E402

import numpy as np  # noqa: E402

MODELS = ("bert_encoder", "mobilenetv2")


def _examples():
    spec = importlib.util.spec_from_file_location("sparseforge_examples_models", ROOT / "examples" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_onnx(model, inputs):
    """Dynamo export + onnxscript optimization; returns the ModelProto every peer runs."""
    import onnx_ir
    import torch
    from onnxscript import optimizer

    program = torch.onnx.export(model, inputs, dynamo=True, verbose=False)
    optimizer.optimize(program.model)
    return onnx_ir.to_proto(program.model)


def make_peers(name, threads, proto, torch_model, inputs, executable):
    import onnxruntime as ort
    import torch

    x = [t.numpy() for t in inputs]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {i.name: a for i, a in zip(session.get_inputs(), x, strict=True)}

    tvm_model = vm.VMRunner(executable, threads=threads)
    tvm_inputs = tvm_model.to_device(x)

    def run_ort():
        session.run(None, feed)

    def run_torch():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            torch_model(*inputs)

    def run_tvm():
        tvm_model.run_tensors(tvm_inputs)

    reference = session.run(None, feed)[0]
    got = tvm_model(*x)[0]
    err = float(np.abs(got - reference).max() / max(1e-12, np.abs(reference).max()))
    return {"onnxruntime": run_ort, "torch-eager": run_torch, "sparseforge-tvm": run_tvm}, err, tvm_model, x


def time_interleaved(peers, rounds, iters, warmup=2, pause=0.5):
    """All timed calls per peer (seconds); peers take turns, ``iters`` timed calls per turn.

    The pause lets the previous peer's worker threads stop spinning (TVM, ORT and OpenMP all spin
    after a parallel region; on 2 cores a spinning thread halves the next peer's speed).
    """
    samples = {k: [] for k in peers}
    for fn in peers.values():
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        for key, fn in peers.items():
            time.sleep(pause)  # let the previous peer's spinning worker threads go idle
            fn()
            for _ in range(iters):
                t0 = time.perf_counter()
                fn()
                samples[key].append(time.perf_counter() - t0)
    return samples


def _category(kernel: str) -> str:
    for key, label in (("sf_dense", "dense/matmul"), ("conv2d_nchwc", "conv (NCHWc)"),
                       ("depthwise", "depthwise conv"), ("softmax", "softmax"), ("layer_norm", "layer norm"),
                       ("vm.builtin", "VM runtime (alloc, views)")):
        if key in kernel:
            return label
    return "other (transpose, layout, pooling...)"


def print_profile(tvm_model, x, top=8):
    prof = tvm_model.profile(*x, repeats=5)
    total = sum(v.seconds for v in prof.values())
    by_cat = {}
    for k, v in prof.items():
        by_cat[_category(k)] = by_cat.get(_category(k), 0.0) + v.seconds
    print(f"    profile (instrumented total {total * 1e3:.2f} ms):")
    for cat, sec in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        print(f"      {cat:38s} {100 * sec / total:5.1f} %")
    print("    top kernels:")
    for k, v in sorted(prof.items(), key=lambda kv: -kv[1].seconds)[:top]:
        print(f"      {k[:56]:56s} {v.seconds * 1e3:7.3f} ms  x{v.calls:<3d} {100 * v.seconds / total:5.1f} %")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iters", type=int, default=0, help="timed calls per turn (default: by model)")
    parser.add_argument("--profile", action="store_true", help="print where TVM's time goes")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    thread_counts = [int(t) for t in args.threads.split(",")]
    examples = _examples()
    host = detect_x86(max(thread_counts))
    print(f"host: mcpu={host.mcpu} lanes={host.vector_lanes} cpus={os.cpu_count()} "
          f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')} torch {torch.__version__} ort {ort.__version__}")
    for name in args.models.split(","):
        model, inputs = getattr(examples, name)()
        t0 = time.perf_counter()
        proto = export_onnx(model, inputs)
        t1 = time.perf_counter()
        mod = cg.import_onnx(proto, optimize_onnx=False)
        t2 = time.perf_counter()
        executable = cg.build(mod, host)
        t3 = time.perf_counter()
        print(f"\n{name}: ONNX export {t1 - t0:.1f} s | TVM compile {t3 - t1:.1f} s "
              f"(import {t2 - t1:.1f} s + build {t3 - t2:.1f} s, no tuning)")
        iters = args.iters or (2 if name == "bert_encoder" else 10)
        for threads in thread_counts:
            peers, err, tvm_model, x = make_peers(name, threads, proto, model, inputs, executable)
            samples = time_interleaved(peers, args.rounds, iters)
            times = {k: statistics.median(v) for k, v in samples.items()}
            best = min(times.values())
            dense_best = min(v for k, v in times.items() if k != "sparseforge-tvm")
            print(f"  threads={threads} (max rel err vs ORT {err:.1e}; median of {len(samples['onnxruntime'])} runs)")
            for key, sec in sorted(times.items(), key=lambda kv: kv[1]):
                print(f"    {key:16s} {sec * 1e3:9.2f} ms   x{sec / best:5.2f} of fastest"
                      f"   (min {min(samples[key]) * 1e3:.2f} ms)")
            print(f"    sparseforge-tvm / best other peer: {times['sparseforge-tvm'] / dense_best:.2f}")
            if args.profile:
                vm.set_num_threads(threads)
                print_profile(tvm_model, x)


if __name__ == "__main__":
    main()
