"""Fused sparse MLP ``Y[M, N2] = act2(act1(X[M, K] @ W1^T + b1) @ W2^T + b2)`` (a transformer's Linear -> GELU ->
Linear with both weights sparse) in one kernel.

Two panel matmuls (:mod:`._panel`) in a row each transpose their input into the panel layout ``D[K, M]`` and
transpose their output back to row-major ``[M, N]``: the intermediate ``H[M, N1]`` (N1 = 4 d in a transformer) makes
a round trip through memory in between. Here X is transposed once, the first sweep writes ``act1(W1 X^T + b1)``
straight into a workspace ``HT[N1, Mp]`` that is the second sweep's dense operand, and only the second sweep
transposes back into Y. Rows of HT past N1 that the second sweep may read (its K padding) are zero; padding
columns (past M) hold ``act1(b1)`` and only reach padding columns of the result, which are never stored.

Weights: CSR (block (1, 1)) or BSR ``r x c`` panel rows, each its own form. Float32, exact up to summation order like
the two kernels it replaces. Called as ``func(X, *constants, Y)``.
"""

from __future__ import annotations

import numpy as np

from sparseforge.ir.forms import Encoded

from ._common import Src, SparseKernel, check_operand, func_header, matmul_reference, parse, resolve_target, unique_name
from .bsr import PANEL_MAX_ROWS
from ._panel import (_chunks, emit_sweep_into_workspace, emit_sweep_into_y, emit_transposed_input, panel_rows,
                     plan_panel)

#: Below this many rows of X the panel kernels are not used (the matmul kernels switch to their small-M variants).
MIN_M = 4


def _operand(weight, block, bias, activation):
    """(encoded weight, bias, panel block): ``block`` None runs an encoded BSR weight with its own blocks and
    anything else as CSR over its nonzeros; an explicit ``block`` other than (1, 1) encodes a dense weight as BSR.
    Blocks taller than :data:`.bsr.PANEL_MAX_ROWS` rows are split, as in the BSR panel matmul."""
    if block is None:
        own = weight.block if isinstance(weight, Encoded) and weight.fmt == "bsr" and weight.block else None
        block = own or (1, 1)
    r, c = (int(block[0]), int(block[1]))
    fmt = "csr" if (r, c) == (1, 1) else "bsr"
    weight, bias = check_operand(weight, bias, activation, "sparse_mlp", fmt, block=None if fmt == "csr" else (r, c))
    return weight, bias, (min(r, PANEL_MAX_ROWS), c)


def sparse_mlp(w1, w2, m: int, *, bias1=None, activation1: str = "none", bias2=None, activation2: str = "none",
               block1: tuple[int, int] | None = None, block2: tuple[int, int] | None = None, target=None, name=None,
               **panel_opts) -> SparseKernel:
    """The fused kernel for ``w1`` ``[N1, K]`` and ``w2`` ``[N2, N1]`` (encoded operands of any form, or dense
    matrices); ``block``: (1, 1) runs a weight as CSR over its nonzeros, (r, c) as BSR blocks, None as its own form
    (BSR blocks for an encoded BSR weight, else CSR). ``panel_opts`` (``max_vectors``, ``l1_bytes``, ``chains``)
    apply to both sweeps."""
    w1, bias1, (r1, c1) = _operand(w1, block1, bias1, activation1)
    w2, bias2, (r2, c2) = _operand(w2, block2, bias2, activation2)
    n1, k = w1.shape
    n2, k2 = w2.shape
    if k2 != n1:
        raise ValueError(f"sparse_mlp: the second weight takes {k2} inputs, the first gives {n1}")
    if m < MIN_M:
        raise ValueError(f"sparse_mlp: needs at least {MIN_M} rows of X (got {m})")
    tgt = resolve_target(target)
    name = name or unique_name("sparse_mlp")
    plan1 = plan_panel(m, -(-k // c1) * c1, r1, c1, tgt, **panel_opts)
    plan2 = plan_panel(m, -(-n1 // c2) * c2, r2, c2, tgt, **panel_opts)
    if plan1.vw != plan2.vw:  # both plans tile the same M; their padded widths must agree
        raise ValueError("sparse_mlp: the two sweeps disagree on the vector width")
    rows1, packed1, f1 = panel_rows(w1, (r1, c1), plan1, prefix="a_")
    rows2, packed2, f2 = panel_rows(w2, (r2, c2), plan2, prefix="b_")
    mp = -(-m // plan1.vw) * plan1.vw
    chunk_parts = tgt.threads * 4 if tgt.threads > 1 else 1
    cptr1 = _chunks(rows1, rows1.n // rows1.r, tgt, chunk_parts)
    cptr2 = _chunks(rows2, rows2.n // rows2.r, tgt, chunk_parts)

    src = Src()
    params: list = [("X", (m, k), "float32")]
    constants: list[np.ndarray] = []
    weights = (("a_", rows1, packed1, cptr1, bias1), ("b_", rows2, packed2, cptr2, bias2))
    for prefix, rows, packed, cptr, bias in weights:
        params += list(rows.arrays)
        constants += list(packed)
        if cptr is not None:
            params.append((f"{prefix}cptr", (len(cptr),), "int32"))
            constants.append(cptr)
        if bias is not None:
            params.append((f"{prefix}bias", (rows.n,), "float32"))
            constants.append(bias)
    params.append(("Y", (m, n2), "float32"))
    func_header(src, name, params)

    emit_transposed_input(src, m=m, k=k, mp=mp, rows=plan1.panels * plan1.kc, tgt=tgt)
    h_rows = max(rows1.nb * rows1.r, plan2.panels * plan2.kc)
    src(f'HT = T.alloc_buffer(({h_rows * mp},), "float32")')
    if h_rows > n1:  # the second sweep's K padding reads these rows: zeros
        with src.block(f"for hz in T.serial({n1 * mp}, {h_rows * mp}):"):
            src("HT[hz] = T.float32(0)")
    emit_sweep_into_workspace(src, m=m, mp=mp, rows=rows1, plan=plan1, tgt=tgt, cptr=cptr1,
                              bias="a_bias" if bias1 is not None else None, activation=activation1,
                              load_d=lambda kk, t0, q: f"XT[({kk}) * {mp} + {t0} + {q}]", out="HT",
                              cptr_name="a_cptr")
    emit_sweep_into_y(src, m=m, mp=mp, rows=rows2, plan=plan2, tgt=tgt, cptr=cptr2,
                      bias="b_bias" if bias2 is not None else None, activation=activation2,
                      load_d=lambda kk, t0, q: f"HT[({kk}) * {mp} + {t0} + {q}]", cptr_name="b_cptr")

    first = matmul_reference(w1, bias1, activation1)
    second = matmul_reference(w2, bias2, activation2)
    info = dict(format=f"{f1}+{f2}", variant="fused-mlp", nnz=int(w1.nnz + w2.nnz), plan=plan1, plan2=plan2,
                hidden=n1)
    return SparseKernel(name=name, func=parse(src), constants=tuple(constants), out_shape=(m, n2),
                        out_dtype="float32", in_shape=(m, k), info=info,
                        _reference=lambda x: second(first(x)))
