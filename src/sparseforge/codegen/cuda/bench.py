"""Benchmark the CUDA sparse kernels against PyTorch on the GPU: ``python -m sparseforge.codegen.cuda.bench --json``.

For each weight shape [N, K] (default 4096x4096, 3072x768, 768x3072), batch M (1, 8, 128) and pattern (90 %
unstructured, 90 % of 4x1 blocks, 90 % of 16x16 blocks, dense) it times ``Y = X @ W^T`` (float32):

* ``tvm``: this package's kernel (CSR / BSR; for "dense" the dlight-scheduled ``relax.op.linear``);
* ``torch_dense``: ``torch.nn.functional.linear`` (cuBLAS; TF32 off);
* ``torch_csr``: ``W.to_sparse_csr() @ X^T`` and ``torch_bsr``: ``W.to_sparse_bsr(block) @ X^T`` (X^T
  prepared once; the result is Y^T).

Times are medians (ms) of ``--repeat`` repeats, each a batch of calls between two ``torch.cuda.synchronize()``.
``max_err`` is the TVM result's max |error| / max(1, max |Y|) against cuBLAS. Exits with status 2 and a message
when no CUDA GPU (or no CUDA-enabled PyTorch) is present.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from ..kernels.testing import block_sparse, unstructured
from .build import build
from .device import KernelRunner, ModelRunner, cuda_device, device_arch, gpu_available, time_gpu
from .graph import mlp_module
from .kernels import bsr_matmul, csr_matmul

SHAPES = ((4096, 4096), (3072, 768), (768, 3072))
BATCHES = (1, 8, 128)
PATTERNS = ("unstructured", "block4x1", "block16x16", "dense")
DENSITY = 0.1


def make_weight(rng, pattern: str, n: int, k: int, density: float = DENSITY) -> np.ndarray:
    if pattern == "dense":
        return (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    if pattern == "unstructured":
        w = unstructured(rng, n, k, density)
    elif pattern.startswith("block"):
        r, c = map(int, pattern[5:].split("x"))
        w = block_sparse(rng, n, k, r, c, density)
    else:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    return (w / np.sqrt(k * density)).astype(np.float32)


def _kernel(pattern: str, w: np.ndarray, m: int, name: str):
    if pattern == "unstructured":
        return csr_matmul(w, m, name=name)
    r, c = map(int, pattern[5:].split("x"))
    return bsr_matmul(w, m, block=(r, c), name=name)


def _no_gpu(msg: str) -> int:
    print(f"sparseforge.codegen.cuda.bench: {msg}", file=sys.stderr)
    return 2


def run(shapes=SHAPES, batches=BATCHES, patterns=PATTERNS, *, repeat: int = 30, seed: int = 0,
        log=lambda s: None) -> dict:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    dev = cuda_device()
    arch = device_arch()
    tsync = torch.cuda.synchronize
    rng = np.random.default_rng(seed)
    records = []
    for n, k in shapes:
        weights = {p: make_weight(rng, p, n, k) for p in patterns}
        t0 = time.perf_counter()
        kernels = {(p, m): _kernel(p, weights[p], m, f"{p}_{n}x{k}_m{m}")
                   for p in patterns if p != "dense" for m in batches}
        lib = build(list(kernels.values()), arch) if kernels else None
        log(f"{n}x{k}: built {len(kernels)} kernels in {time.perf_counter() - t0:.1f} s")
        for p in patterns:
            w = weights[p]
            wt = torch.from_numpy(w).cuda()
            sparse = {}
            if p != "dense":
                sparse["torch_csr"] = lambda wt=wt: wt.to_sparse_csr()
                if p.startswith("block"):
                    r, c = map(int, p[5:].split("x"))
                    sparse["torch_bsr"] = lambda wt=wt, r=r, c=c: wt.to_sparse_bsr((r, c))
            for m in batches:
                x = rng.standard_normal((m, k)).astype(np.float32)
                xt = torch.from_numpy(x).cuda()
                xT = xt.t().contiguous()
                ref = torch.nn.functional.linear(xt, wt)
                rec = dict(shape=[n, k], m=m, pattern=p, density=float(np.count_nonzero(w)) / w.size, ms={},
                           errors={})
                rec["ms"]["torch_dense"] = 1e3 * time_gpu(lambda: torch.nn.functional.linear(xt, wt), tsync,
                                                          repeat=repeat)
                for key, make in sparse.items():
                    try:
                        ws = make()
                        got = (ws @ xT).t()
                        rec["errors"][key] = float((got - ref).abs().max() / max(1.0, float(ref.abs().max())))
                        rec["ms"][key] = 1e3 * time_gpu(lambda ws=ws: ws @ xT, tsync, repeat=repeat)
                    except Exception as exc:  # unsupported layouts/dtypes in this torch build
                        rec["ms"][key] = None
                        rec["errors"][key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                if p == "dense":
                    runner = ModelRunner(build(mlp_module([("dense", w, None, "none")], m, k), arch), dev=dev)
                    args = runner.device_inputs([x])
                    y = runner.func(*args).numpy()
                    rec["tvm_kernel"] = dict(format="dense", variant="dlight")
                    rec["ms"]["tvm"] = 1e3 * time_gpu(lambda: runner.func(*args), tsync, repeat=repeat)
                else:
                    kern = kernels[(p, m)]
                    runner = KernelRunner(lib, kern, x, dev=dev)
                    y = runner(x)
                    rec["tvm_kernel"] = {key: kern.info[key] for key in ("format", "variant", "schedule")
                                         if key in kern.info}
                    rec["ms"]["tvm"] = 1e3 * time_gpu(runner.call, tsync, repeat=repeat)
                r = ref.cpu().numpy()
                rec["max_err"] = float(np.abs(y - r).max() / max(1.0, float(np.abs(r).max())))
                dense_ms = rec["ms"]["torch_dense"]
                rec["speedup_vs_cublas"] = dense_ms / rec["ms"]["tvm"] if rec["ms"]["tvm"] else None
                records.append(rec)
                log(f"  {p:13s} m={m:4d} " + " ".join(
                    f"{key}={v:.4f}" if isinstance(v, float) else f"{key}={v}" for key, v in rec["ms"].items())
                    + f" err={rec['max_err']:.2e}")
    return dict(device=torch.cuda.get_device_name(0), arch=arch, torch=torch.__version__,
                python=platform.python_version(), repeat=repeat, results=records)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sparseforge.codegen.cuda.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--shapes", default=",".join(f"{n}x{k}" for n, k in SHAPES), help="NxK,... (W is [N, K])")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        return _no_gpu("PyTorch is not installed (pip install torch with CUDA support)")
    if not gpu_available() or not torch.cuda.is_available():
        return _no_gpu("no CUDA GPU available (needs an NVIDIA GPU, its driver and a CUDA build of PyTorch)")
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",") if s]
    batches = [int(b) for b in args.batches.split(",") if b]
    patterns = [p for p in args.patterns.split(",") if p]
    for p in patterns:
        if p not in PATTERNS and not p.startswith("block"):
            ap.error(f"unknown pattern {p!r}; expected {PATTERNS}")
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    result = run(shapes, batches, patterns, repeat=args.repeat, log=log)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for r in result["results"]:
            ms = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r["ms"].items())
            print(f"{r['shape'][0]}x{r['shape'][1]} m={r['m']} {r['pattern']}: {ms} err={r['max_err']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
