"""Dense reference kernel ``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias)`` for calibration against sparse kernels.

Packed weight ``Wp[ceil(N/NR), K, NR]`` (float32, NR = 2 * lanes output columns, zero padded) and a register tile of
MR rows of X x NR columns, parallel over column panels (the hand-scheduled TVM schedule of baselines.md, written
out directly with tails for any M and N and the fused epilogue). For small M the reduction is split over U
accumulator sets to hide FMA latency. Exact up to summation order.
"""

from __future__ import annotations

import numpy as np

from ._common import (SparseKernel, Src, check_common, func_header, matmul_reference, parallel_or_serial, parse,
                      resolve_target, unique_name, vec_loops)
from .activations import emit_activation
from ._panel import FMA_CHAINS


def dense_pack(weight: np.ndarray, nr: int) -> np.ndarray:
    n, k = weight.shape
    nj = -(-n // nr)
    wp = np.zeros((nj * nr, k), np.float32)
    wp[:n] = weight
    return np.ascontiguousarray(wp.reshape(nj, nr, k).transpose(0, 2, 1))


def dense_matmul(weight, m, *, bias=None, activation="none", target=None, name=None, nr: int | None = None,
                 mr: int | None = None) -> SparseKernel:
    """Dense matmul kernel with the packed constant ``weight`` [N, K] for batch ``m``; constants ``(Wp[, bias])``."""
    weight, bias = check_common(weight, bias, activation, "dense_matmul")
    tgt = resolve_target(target)
    n, k = weight.shape
    name = name or unique_name("dense_matmul")
    L = tgt.lanes
    nr = nr or 2 * L
    nrv = max(1, nr // L)
    budget = max(tgt.registers - 4, 4)
    mr = max(1, min(m, mr or min(8, budget // nrv)))
    wp = dense_pack(weight, nr)
    nj = wp.shape[0]
    njf = n // nr
    src = Src()
    params = [("X", (m, k), "float32"), ("Wp", wp.shape, "float32")]
    if bias is not None:
        params.append(("bias", (n,), "float32"))
    params.append(("Y", (m, n), "float32"))
    func_header(src, name, params)

    def tile(jo: str, i0: str, rows: int, cols_valid: int) -> None:
        u_sets = max(1, min(-(-FMA_CHAINS // (rows * nrv)), budget // (rows * nrv), 8))
        acc = src.var("acc")
        size = u_sets * rows * nr
        src(f'{acc} = T.alloc_buffer(({size},), "float32", scope="local")')
        with vec_loops(src, size, L, "v") as v:
            src(f"{acc}[{v}] = T.float32(0)")

        def step(kx: str, u: int) -> None:
            with src.block(f"for ii in T.unroll({rows}):"):
                xv = src.var("x")
                src.let(xv, f"X[{i0} + ii, {kx}]")
                with vec_loops(src, nr, L, "j") as j:
                    a = f"{acc}[({u * rows} + ii) * {nr} + {j}]"
                    src(f"{a} = {a} + {xv} * Wp[{jo}, {kx}, {j}]")

        if k // u_sets:
            with src.block(f"for ko in T.serial({k // u_sets}):"):
                for u in range(u_sets):
                    step(f"ko * {u_sets} + {u}" if u_sets > 1 else "ko", u)
        if k % u_sets:
            with src.block(f"for kx in T.serial({k // u_sets * u_sets}, {k}):"):
                step("kx", 0)
        if u_sets > 1:
            with vec_loops(src, rows * nr, L, "v") as v:
                src(f"{acc}[{v}] = " + " + ".join(f"{acc}[{u * rows * nr} + {v}]" for u in range(u_sets)))
        with src.block(f"for ii in T.unroll({rows}):"):
            with vec_loops(src, cols_valid, L, "j") as j:
                y = src.var("y")
                col = f"{jo} * {nr} + {j}"
                src.let(y, f"{acc}[ii * {nr} + {j}]" + (f" + bias[{col}]" if bias is not None else ""))
                src(f"Y[{i0} + ii, {col}] = {emit_activation(src, y, activation)}")

    def panel(jo: str, cols_valid: int) -> None:
        if m // mr:
            with src.block(f"for io in T.serial({m // mr}):"):
                tile(jo, f"io * {mr}", mr, cols_valid)
        if m % mr:
            tile(jo, str(m // mr * mr), m % mr, cols_valid)

    if njf:
        with src.block(f"for jo in {parallel_or_serial(tgt.threads, njf)}({njf}):"):
            panel("jo", nr)
    if nj > njf:
        panel(str(njf), n - njf * nr)
    consts = (wp,) + ((bias,) if bias is not None else ())
    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(m, n), out_dtype="float32",
                        in_shape=(m, k), info=dict(format="dense-packed", nr=nr, mr=mr),
                        _reference=matmul_reference(weight, bias, activation))
