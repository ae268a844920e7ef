"""Acceptance benchmark of the sparse TIR kernels against dense peers.

For every weight shape (out x in), batch M and sparsity pattern, times (median of interleaved rounds, warm):
ONNX Runtime dense MatMul, PyTorch dense ``F.linear``, NumPy ``x @ W.T``, the dense TIR kernel and the sparse
kernel for that pattern, and reports the sparse kernel's speedup over the fastest dense peer.

    python benchmarks/kernel_suite.py --threads 2            # full suite (several minutes)
    python benchmarks/kernel_suite.py --threads 1 --quick    # 4096x4096 only, fewer patterns and rounds

Thread counts are fixed through environment variables before any library is imported (TVM's pool otherwise
takes half the logical CPUs on x86). Ratios are taken side by side in one process; absolute times on a shared
machine are not meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

SHAPES = [(4096, 4096), (3072, 768), (768, 3072)]
BATCHES = [1, 8, 128]
PATTERNS = ["dense", "u50", "u75", "u90", "u95", "2:4", "b1x4", "b4x1", "b4x4", "b16x16"]
QUICK_PATTERNS = ["dense", "u90", "u95", "2:4", "b1x4", "b4x1", "b4x4", "b16x16"]
BLOCK_SPARSITY = 0.9


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="4096x4096 only, fewer patterns and rounds")
    p.add_argument("--shapes", default=None, help="e.g. 4096x4096,3072x768")
    p.add_argument("--batches", default=None, help="e.g. 1,8,128")
    p.add_argument("--patterns", default=None, help="comma list from " + ",".join(PATTERNS))
    p.add_argument("--block-sparsity", type=float, default=BLOCK_SPARSITY, help="sparsity of the b* patterns")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (median taken)")
    p.add_argument("--no-peers", action="store_true", help="skip ORT/torch (numpy and TIR dense only)")
    p.add_argument("--json", default=None, help="write all results to this file")
    p.add_argument("--wait-quiet", type=float, default=60.0,
                   help="before each case wait up to this many seconds until other processes use < 0.25 cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spin", action="store_true", help="let idle pool threads spin (default: passive waiting)")
    return p.parse_args(argv)


def set_threads(n: int, spin: bool) -> None:
    """Thread counts for every engine; unless ``spin``, idle pool threads sleep at once instead of spinning
    (on a 2-core machine a peer's spinning workers would steal the core the next engine needs)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS"):
        os.environ[var] = str(n)
    if not spin:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
        os.environ["TVM_THREAD_POOL_SPIN_COUNT"] = "0"


# ------------------------------------------------------------------------------------------------ weights


def make_weight(rng, n, k, pattern, block_sparsity):
    import numpy as np

    w = rng.standard_normal((n, k)).astype(np.float32)
    if pattern == "dense":
        return w
    if pattern.startswith("u"):
        return w * (rng.random((n, k)) >= int(pattern[1:]) / 100)
    if ":" in pattern:
        nn, g = (int(s) for s in pattern.split(":"))
        blocks = w.reshape(n, k // g, g)
        keep = np.argsort(rng.random(blocks.shape), axis=2)[:, :, :nn]
        mask = np.zeros(blocks.shape, bool)
        np.put_along_axis(mask, keep, True, axis=2)
        return (blocks * mask).reshape(n, k)
    if pattern.startswith("b"):
        r, c = (int(s) for s in pattern[1:].split("x"))
        mask = rng.random((-(-n // r), -(-k // c))) >= block_sparsity
        return w * np.kron(mask, np.ones((r, c), bool))[:n, :k]
    raise ValueError(pattern)


def sparse_kernel(w, m, pattern, tgt):
    from sparseforge.codegen import kernels as K

    if pattern == "dense":
        return None
    if pattern.startswith("u"):
        return K.csr_matmul(w, m, target=tgt)
    if ":" in pattern:
        nn, g = (int(s) for s in pattern.split(":"))
        return K.nm_matmul(w, m, n=nn, group=g, target=tgt)
    r, c = (int(s) for s in pattern[1:].split("x"))
    return K.bsr_matmul(w, m, block=(r, c), target=tgt)


# ------------------------------------------------------------------------------------------------ peers


def ort_session(w, threads, spin=False):
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])
    init = numpy_helper.from_array(np.ascontiguousarray(w.T), "WT")
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "WT"], ["Y"])], "mm", [x], [y], [init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def dense_peers(w, x, threads, tgt, no_peers, spin=False):
    import numpy as np

    from sparseforge.codegen import kernels as K

    peers = {}
    if not no_peers:
        sess = ort_session(w, threads, spin)
        feed = {"X": x}
        peers["ort"] = lambda: sess.run(None, feed)
        import torch

        tw, tx = torch.from_numpy(w), torch.from_numpy(x)

        def run_torch():
            with torch.inference_mode():
                torch.nn.functional.linear(tx, tw)

        peers["torch"] = run_torch
    wt = np.ascontiguousarray(w.T)
    peers["numpy"] = lambda: x @ wt
    dk = K.dense_matmul(w, x.shape[0], target=tgt)
    runner = K.Runner(K.build(dk, tgt), dk, x)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.abs(runner() - ref).max() <= 1e-4 * (np.abs(ref).max() + 1), "dense TIR kernel mismatch"
    peers["tir-dense"] = runner.call
    return peers


# ------------------------------------------------------------------------------------------------ main


def _cpu_snapshot():
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), sum(os.times()[:2]), time.time()
    except (OSError, ValueError):  # pragma: no cover
        return None


def _other_since(snap) -> float:
    """Cores used by other processes since ``snap`` (0 when unknown)."""
    now = _cpu_snapshot()
    if snap is None or now is None or now[2] <= snap[2]:
        return 0.0
    return max(0.0, (now[0] - snap[0]) - (now[1] - snap[1])) / (now[2] - snap[2])


def other_load(interval: float = 0.5) -> float:
    """CPU cores used by other processes over ``interval`` seconds (Linux /proc/stat; 0 elsewhere)."""
    snap = _cpu_snapshot()
    time.sleep(interval)
    return _other_since(snap)


def wait_quiet(timeout: float) -> float:
    """Wait until other processes use < 0.25 cores (at most ``timeout`` s); returns the last load seen."""
    t0 = time.time()
    load = other_load()
    while load >= 0.25 and time.time() - t0 < timeout:
        load = other_load()
    return load


def time_interleaved(fns: dict, rounds: int, budget: float = 0.05, quiet_timeout: float = 0.0) -> dict:
    """Median over ``rounds`` of per-round medians; each round times every function in turn.

    With ``quiet_timeout`` > 0, a round during which other processes used >= 0.25 cores is discarded and
    repeated after waiting for a quiet machine (at most 3 * rounds attempts)."""
    import numpy as np

    from sparseforge.codegen.kernels.measure import time_call

    for f in fns.values():
        f()
    est = {name: time_call(f, repeat=3, warmup=1) for name, f in fns.items()}
    samples = {name: [] for name in fns}
    attempts = 0
    while len(samples[next(iter(fns))]) < rounds:
        attempts += 1
        snap = _cpu_snapshot()
        got = {}
        for name, f in fns.items():
            reps = int(min(50, max(3, budget / max(est[name], 1e-6))))
            got[name] = time_call(f, repeat=reps, warmup=1)
        if quiet_timeout > 0 and attempts < 3 * rounds and _other_since(snap) >= 0.25:
            wait_quiet(quiet_timeout)
            continue
        for name, t in got.items():
            samples[name].append(t)
    return {name: float(np.median(v)) for name, v in samples.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads, args.spin)
    import numpy as np

    from sparseforge.codegen import kernels as K

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:  # pragma: no cover
        args.no_peers = True
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")] if args.shapes else \
        ([SHAPES[0]] if args.quick else SHAPES)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else BATCHES
    patterns = args.patterns.split(",") if args.patterns else (QUICK_PATTERNS if args.quick else PATTERNS)
    rounds = args.rounds or (5 if args.quick else 7)
    tgt = K.make_target(threads=args.threads)
    rng = np.random.default_rng(args.seed)
    print(f"# threads={args.threads} lanes={tgt.lanes} gather={tgt.gather} target={tgt.tvm_target}", flush=True)
    print(f"{'shape':>10} {'M':>4} {'pattern':>7} {'variant':>14} {'sparse ms':>9} {'best dense':>16} "
          f"{'ratio':>6} {'vs tir':>6}", flush=True)
    results = []
    for n, k in shapes:
        dense_w = rng.standard_normal((n, k)).astype(np.float32)
        for m in batches:
            x = rng.standard_normal((m, k)).astype(np.float32)
            peers = dense_peers(dense_w, x, args.threads, tgt, args.no_peers, args.spin)
            fns = {f"dense:{p}": f for p, f in peers.items()}
            kinfo = {}
            for pat in patterns:
                w = make_weight(rng, n, k, pat, args.block_sparsity)
                t0 = time.perf_counter()
                kern = sparse_kernel(w, m, pat, tgt)
                if kern is None:
                    continue
                runner = K.Runner(K.build(kern, tgt), kern, x)
                ref = kern.reference(x)
                err = float(np.abs(runner() - ref).max() / (np.abs(ref).max() + 1e-30))
                if err > 1e-4:
                    print(f"!! {pat} M={m}: relative error {err:.2e}", file=sys.stderr)
                fns[pat] = runner.call
                kinfo[pat] = dict(kern.info, build_s=time.perf_counter() - t0, err=err)
            load = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else 0.0
            if load >= 0.25:
                print(f"# note: other processes used {load:.1f} cores while timing", flush=True)
            times = time_interleaved(fns, rounds, quiet_timeout=args.wait_quiet)
            dense_t = {p: times[f"dense:{p}"] for p in peers}
            best = min(dense_t, key=dense_t.get)
            for pat in patterns:
                if pat == "dense":
                    print(f"{n}x{k:<5} {m:>4} {'dense':>7} {'':>14} {'':>9} "
                          + " ".join(f"{p}={t * 1e3:.3f}" for p, t in dense_t.items()), flush=True)
                    results.append(dict(shape=[n, k], m=m, pattern="dense", dense_ms={p: t * 1e3 for p, t in
                                                                                      dense_t.items()}))
                    continue
                t = times[pat]
                info = kinfo[pat]
                ratio = dense_t[best] / t
                vs_tir = dense_t["tir-dense"] / t
                variant = info.get("variant", "") + ("/static" if info.get("static") else "")
                peer = f"{best}={dense_t[best] * 1e3:.3f}"
                print(f"{n}x{k:<5} {m:>4} {pat:>7} {variant:>14} {t * 1e3:9.3f} {peer:>16} {ratio:6.2f} {vs_tir:6.2f}",
                      flush=True)
                results.append(dict(shape=[n, k], m=m, pattern=pat, sparse_ms=t * 1e3, best_dense=best,
                                    dense_ms={p: v * 1e3 for p, v in dense_t.items()}, ratio=ratio,
                                    ratio_vs_tir=vs_tir, info={k_: v for k_, v in info.items()
                                                               if isinstance(v, (int, float, str, bool))}))
            del fns, peers
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(threads=args.threads, results=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
