"""Sparse-times-dense-panel kernels (the "Fast Sparse ConvNets" design): vectorize over the dense operand.

For every block row of the sparse weight (r output rows, blocks of c columns) and every tile of ``PT`` columns of
the dense operand ``D[k, p]`` (p contiguous), accumulate ``acc[rr, p] += w[rr, cc] * D[col + cc, p]``: one scalar
broadcast, ``PT / VW`` vector loads and FMAs per weight. ``U`` independent accumulator sets hide the FMA latency.

* matmul: ``D = X^T`` (the kernel first transposes X[M, K] into a zero-padded ``XT[Kp, Mp]`` workspace); results
  are stored transposed into Y[M, N].
* conv 1x1 (NCHW): ``D = X[b]`` ([Cin, H*W]) directly, results stored contiguously into Y[b] ([Cout, H*W]).

Sparse rows are described by :class:`PanelRows` (CSR, BSR, N:M) with either runtime index arrays or a static
pattern unrolled into the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._act import emit_activation
from ._common import KernelTarget, Src, balanced_chunks, func_header, parallel_or_serial, pow2_ceil

FMA_CHAINS = 8  # independent accumulators needed to hide FMA latency (2 pipes x 4 cycles on Zen / Skylake)


@dataclass
class PanelRows:
    """Sparse weight rows as seen by the panel kernel.

    r, c: block shape; nb: block rows (the last one may be partial); n: valid rows; kp: padded reduction length;
    arrays: constant buffers (name, shape, dtype) in calling order; first/end(ib): entry range of block row ib;
    col(j): first column of entry j; w(j, rr, cc): weight value; work: per block row cost (for chunking);
    static: per block row list of (j, col) literals when the pattern is baked into the code.
    """

    r: int
    c: int
    nb: int
    n: int
    kp: int
    arrays: list
    first: Callable[[str], str] | None
    end: Callable[[str], str] | None
    col: Callable[[str], str]
    w: Callable[[str, int, int], str]
    work: np.ndarray
    static: list | None = None
    extra: dict = field(default_factory=dict)

    @staticmethod
    def csr(n, k, rowptr, tgt: KernelTarget, idx_dtype: str, nnz: int | None = None):
        nnz = max(int(rowptr[-1]), 1)
        return PanelRows(
            r=1, c=1, nb=n, n=n, kp=k,
            arrays=[("vals", (nnz,), "float32"), ("idx", (nnz,), idx_dtype), ("rowptr", (n + 1,), "int32")],
            first=lambda ib: f"rowptr[{ib}]", end=lambda ib: f"rowptr[{ib} + 1]",
            col=lambda j: f'T.Cast("int32", idx[{j}])', w=lambda j, rr, cc: f"vals[{j}]",
            work=np.diff(rowptr).astype(np.float64) + 2)


def _tile_plan(rows: PanelRows, mp: int, vw: int, tgt: KernelTarget, max_vectors: int | None,
               chains: int) -> tuple[int, int]:
    """(vectors per tile V, accumulator sets U)."""
    budget = max(tgt.registers - 4, 4)
    v = max(1, min(mp // vw, budget // max(rows.r, 1)))
    # keep a D tile (kp x PT floats) within half the per-core cache
    while v > 1 and rows.kp * v * vw * 4 > tgt.cache_bytes // 2:
        v -= 1
    if max_vectors:
        v = max(1, min(v, max_vectors))
    u = max(1, -(-chains // (rows.r * v)))
    u = max(1, min(u, budget // max(rows.r * v, 1)))
    return v, u


def _emit_block_row(src: Src, rows: PanelRows, ib: str, ib_static: int | None, pt: int, vw: int, u_sets: int,
                    load_d: Callable[[str, str], str], store: Callable[[int, str, str], None], rows_valid: int,
                    bias: bool, activation: str) -> None:
    """Accumulate one block row over one tile, then apply bias/activation and store rows_valid rows."""
    r, c = rows.r, rows.c
    sfx = src.var("_")
    acc = f"acc{sfx}"
    size = u_sets * r * pt
    src(f'{acc} = T.alloc_buffer(({size},), "float32", scope="local")')
    with src.block(f"for v in T.serial({size // vw}):"):
        with src.block(f"for vi in T.vectorized({vw}):"):
            src(f"{acc}[v * {vw} + vi] = T.float32(0)")

    def fma(j: str, colx: str, u: int) -> None:
        for cc in range(c):
            for rr in range(r):
                wv = src.var("w")
                src.let(wv, f"{rows.w(j, rr, cc)}")
                base = (u * r + rr) * pt
                kk = f"{colx} + {cc}" if cc else colx
                for vo in range(pt // vw):
                    with src.block(f"for vi in T.vectorized({vw}):"):
                        p = f"{vo * vw} + vi"
                        src(f"{acc}[{base + vo * vw} + vi] = {acc}[{base + vo * vw} + vi] + {wv} * {load_d(kk, p)}")

    if ib_static is not None:
        for t, (j, colv) in enumerate(rows.static[ib_static]):
            fma(str(j), str(colv), t % u_sets)
    else:
        first, end = src.var("f"), src.var("e")
        src.let(first, f"{rows.first(ib)}")
        src.let(end, f"{rows.end(ib)}")
        if u_sets > 1:
            with src.block(f"for jj in T.serial(({end} - {first}) // {u_sets}):"):
                for u in range(u_sets):
                    j, colx = src.var("j"), src.var("col")
                    src.let(j, f"{first} + jj * {u_sets} + {u}")
                    src.let(colx, f"{rows.col(j)}")
                    fma(j, colx, u)
            rest = f"{first} + ({end} - {first}) // {u_sets} * {u_sets}"
        else:
            rest = first
        with src.block(f"for j in T.serial({rest}, {end}):"):
            colx = src.var("col")
            src.let(colx, f"{rows.col('j')}")
            fma("j", colx, 0)
    if u_sets > 1:
        with src.block(f"for v in T.serial({r * pt // vw}):"):
            with src.block(f"for vi in T.vectorized({vw}):"):
                terms = " + ".join(f"{acc}[{u * r * pt} + v * {vw} + vi]" for u in range(u_sets))
                src(f"{acc}[v * {vw} + vi] = {terms}")
    for rr in range(rows_valid):
        row = f"{ib} * {r} + {rr}" if r > 1 else ib
        with src.block(f"for v in T.serial({pt // vw}):"):
            with src.block(f"for vi in T.vectorized({vw}):"):
                y = src.var("y")
                src.let(y, f"{acc}[{rr * pt} + v * {vw} + vi]" + (f" + bias[{row}]" if bias else ""))
                src(f"{acc}[{rr * pt} + v * {vw} + vi] = {emit_activation(src, y, activation)}")
        store(rr, row, acc)


def _chunks(rows: PanelRows, nbf: int, tgt: KernelTarget) -> np.ndarray:
    parts = 1 if tgt.threads <= 1 else tgt.threads * 4
    return balanced_chunks(rows.work[:nbf], parts)


def emit_panel_matmul(name: str, *, m: int, rows: PanelRows, tgt: KernelTarget, bias: bool, activation: str,
                      max_vectors: int | None = None, chains: int = FMA_CHAINS, vector_width: int | None = None):
    """TVMScript source of ``Y[M, N] = act(X @ W^T + bias)`` with X transposed into a workspace.

    Returns (src, cptr) where cptr (chunk boundaries over full block rows) must be passed after ``rows.arrays``
    (None when the kernel is not chunked: static pattern or one thread)."""
    L = tgt.lanes
    vw = vector_width or (L if m >= L else min(L, max(pow2_ceil(m), min(4, L))))
    mp = -(-m // vw) * vw
    v, u_sets = _tile_plan(rows, mp, vw, tgt, max_vectors, chains)
    pt = v * vw
    k = rows.extra.get("k", rows.kp)
    n, r = rows.n, rows.r
    nbf = n // r
    static = rows.static is not None
    cptr = None if (static or tgt.threads <= 1) else _chunks(rows, nbf, tgt)

    src = Src()
    params = [("X", (m, k), "float32")] + list(rows.arrays)
    if cptr is not None:
        params.append(("cptr", (len(cptr),), "int32"))
    if bias:
        params.append(("bias", (n,), "float32"))
    params.append(("Y", (m, n), "float32"))
    func_header(src, name, params)

    # 1. X -> XT[kp, mp], zero padded
    kb = 64
    nkb = -(-rows.kp // kb)
    src(f'XT = T.alloc_buffer(({rows.kp}, {mp}), "float32")')
    with src.block(f"for kb in {parallel_or_serial(tgt.threads, nkb)}({nkb}):"):
        with src.block(f"for mm in T.serial({mp}):"):
            with src.block(f"for kk in T.serial({kb}):"):
                kx = f"kb * {kb} + kk"
                cond = []
                if rows.kp % kb:
                    cond.append(f"{kx} < {rows.kp}")
                body = (f"T.if_then_else(mm < {m} and {kx} < {k}, X[T.min(mm, {m - 1}), T.min({kx}, {k - 1})], "
                        f"T.float32(0))") if (mp > m or rows.kp > k) else f"X[mm, {kx}]"
                if cond:
                    with src.block(f"if {cond[0]}:"):
                        src(f"XT[{kx}, mm] = {body}")
                else:
                    src(f"XT[{kx}, mm] = {body}")

    tiles = [(t * pt, pt) for t in range(mp // pt)]
    if mp % pt:
        tiles.append((mp // pt * pt, mp % pt))

    def emit_tile(ib: str, ib_static, t0: str, width: int, m_valid: int, rows_valid: int) -> None:
        def load_d(kk, p):
            return f"XT[{kk}, {t0} + {p}]"

        def store(rr, row, acc):
            with src.block(f"for mm in T.serial({m_valid}):" if not static else f"for mm in T.unroll({m_valid}):"):
                src(f"Y[{t0} + mm, {row}] = {acc}[{rr * width} + mm]")

        _emit_block_row(src, rows, ib, ib_static, width, vw, _sets(width), load_d, store, rows_valid, bias,
                        activation)

    def _sets(width: int) -> int:
        if width == pt:
            return u_sets
        accs = r * (width // vw)
        return max(1, min(-(-chains // accs), max(1, (tgt.registers - 4) // accs)))

    def tile_loop(ib: str, ib_static, rows_valid: int) -> None:
        valid_full = [t for t in tiles if t[1] == pt and t[0] + pt <= m]
        if valid_full:
            if len(valid_full) > 1:
                with src.block(f"for t in T.serial({len(valid_full)}):"):
                    emit_tile(ib, ib_static, f"t * {pt}", pt, pt, rows_valid)
            else:
                emit_tile(ib, ib_static, "0", pt, pt, rows_valid)
        for t0, width in tiles[len(valid_full):]:
            emit_tile(ib, ib_static, str(t0), width, max(0, min(width, m - t0)), rows_valid)

    if static:
        groups = np.array_split(np.arange(rows.nb), max(1, min(tgt.threads, rows.nb)))
        par = parallel_or_serial(tgt.threads, len(groups))
        with src.block(f"for c in {par}({len(groups)}):"):
            for gi, grp in enumerate(groups):
                with src.block(f"if c == {gi}:"):
                    for ibv in grp:
                        tile_loop(str(int(ibv)), int(ibv), r if (ibv + 1) * r <= n else n - ibv * r)
    else:
        if nbf:
            if cptr is not None:
                with src.block(f"for c in T.parallel({len(cptr) - 1}):"):
                    with src.block("for ib in T.serial(cptr[c], cptr[c + 1]):"):
                        tile_loop("ib", None, r)
            else:
                with src.block(f"for ib in T.serial({nbf}):"):
                    tile_loop("ib", None, r)
        if n % r:
            tile_loop(str(nbf), None, n % r)
    return src, cptr
