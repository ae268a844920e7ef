"""The fused sparse MLP kernel against the two panel matmuls it replaces (Linear -> GELU -> Linear of a transformer).

For each case (M tokens, d -> 4d -> d, density of both weights) the two kernels (the first with GELU fused into its
epilogue, as the compiler builds them) and :func:`sparseforge.codegen.kernels.sparse_mlp` are built into one
module, checked against each other, and timed interleaved: median over rounds of the minimum of ``--repeat`` calls.
Prints the time of the pair, of the fused kernel, and their ratio (> 1: fusing pays).

usage: python benchmarks/fused_mlp.py [--threads 1] [--rounds 7] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sparseforge.codegen.kernels import Runner, build, csr_matmul, make_target, sparse_mlp
from sparseforge.codegen.kernels.measure import time_call
from sparseforge.codegen.kernels.testing import unstructured
from sparseforge.driver.bench import pin_threads

#: (tokens M, model width d, density of both weights)
CASES = [(128, 768, 0.1), (128, 768, 0.3), (384, 768, 0.1), (32, 768, 0.1), (128, 256, 0.1)]


def run_case(m: int, d: int, density: float, threads: int, rounds: int, repeat: int) -> dict:
    tgt = make_target(threads=threads)
    rng = np.random.default_rng(0)
    w1, w2 = unstructured(rng, 4 * d, d, density), unstructured(rng, d, 4 * d, density)
    b1, b2 = (rng.standard_normal(n).astype(np.float32) for n in (4 * d, d))
    fc1 = csr_matmul(w1, m, bias=b1, activation="gelu", target=tgt, name="fc1")
    fc2 = csr_matmul(w2, m, bias=b2, target=tgt, name="fc2")
    fused = sparse_mlp(w1, w2, m, bias1=b1, activation1="gelu", bias2=b2, target=tgt, name="mlp")
    lib = build([fc1, fc2, fused], tgt)
    x = rng.standard_normal((m, d)).astype(np.float32)
    r1, r2, rf = Runner(lib, fc1, x), Runner(lib, fc2), Runner(lib, fused, x)
    r2.x = r1.y  # the second kernel reads the first one's output tensor

    def pair():
        r1.call()
        r2.call()

    pair()
    y_pair, y_fused = r2.y.numpy(), rf()
    err = float(np.abs(y_pair - y_fused).max() / max(1.0, np.abs(y_pair).max()))
    assert err < 1e-4, f"fused MLP differs from the two kernels by {err}"
    times: dict[str, list[float]] = {"pair": [], "fused": []}
    for _ in range(rounds):
        times["pair"].append(time_call(pair, repeat=repeat))
        times["fused"].append(time_call(rf.call, repeat=repeat))
    pair_ms, fused_ms = (float(np.median(times[k])) * 1e3 for k in ("pair", "fused"))
    return dict(m=m, d=d, density=density, threads=threads, pair_ms=round(pair_ms, 4),
                fused_ms=round(fused_ms, 4), ratio=round(pair_ms / fused_ms, 3), max_error=err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    pin_threads(args.threads)
    rows = []
    for m, d, density in CASES:
        row = run_case(m, d, density, args.threads, args.rounds, args.repeat)
        rows.append(row)
        print(f"M {m:4d}  {d} -> {4 * d} -> {d}  density {density:.2f}: two kernels {row['pair_ms']:.3f} ms, "
              f"fused {row['fused_ms']:.3f} ms ({row['ratio']:.2f}x)", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
