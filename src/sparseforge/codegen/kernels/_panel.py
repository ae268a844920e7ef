"""Sparse-times-dense-panel kernels (the "Fast Sparse ConvNets" design): vectorize over the dense operand.

For every block row of the sparse weight (r output rows, blocks of c columns) and every tile of ``PT`` columns of
the dense operand ``D[k, p]`` (p contiguous), accumulate ``acc[rr, p] += w[rr, cc] * D[col + cc, p]``: one scalar
broadcast, ``PT / VW`` vector loads and FMAs per weight. ``U`` independent accumulator sets hide the FMA latency.

* matmul: ``D = X^T`` (the kernel first transposes X[M, K] into a zero-padded ``XT[Kp, Mp]`` workspace); results
  are stored transposed into Y[M, N].
* conv 1x1 (NCHW): ``D = X[b]`` ([Cin, H*W]) directly, results stored contiguously into Y[b] ([Cout, H*W]).

Sparse rows are described by :class:`PanelRows` (CSR, BSR or N:M index arrays).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._act import emit_activation
from ._common import KernelTarget, Src, balanced_chunks, func_header, parallel_or_serial, pow2_ceil

FMA_CHAINS = 8  # independent accumulators needed to hide FMA latency (2 pipes x 4 cycles on Zen / Skylake)


@dataclass
class PanelRows:
    """Sparse weight rows as seen by the panel kernel.

    r, c: block shape; nb: block rows (the last one may be partial); n: valid rows; kp: padded reduction length
    (rows of the dense operand that may be read); arrays: constant buffers (name, shape, dtype) in calling order;
    first/end(ib): entry range of block row ib; col(j, ib): first column of entry j; w(j, rr, cc): weight value;
    work: per block row cost (for chunking); fixed: entries per block row when constant (N:M).
    """

    r: int
    c: int
    nb: int
    n: int
    kp: int
    arrays: list
    first: Callable[[str], str]
    end: Callable[[str], str]
    col: Callable[[str, str], str]
    w: Callable[[str, str, str], str]
    work: np.ndarray
    fixed: int | None = None
    extra: dict = field(default_factory=dict)

    @staticmethod
    def csr(n: int, k: int, rowptr: np.ndarray, idx_dtype: str) -> "PanelRows":
        nnz = max(int(rowptr[-1]), 1)
        return PanelRows(
            r=1, c=1, nb=n, n=n, kp=k,
            arrays=[("vals", (nnz,), "float32"), ("idx", (nnz,), idx_dtype), ("rowptr", (n + 1,), "int32")],
            first=lambda ib: f"rowptr[{ib}]", end=lambda ib: f"rowptr[{ib} + 1]",
            col=lambda j, ib: f'T.Cast("int32", idx[{j}])', w=lambda j, rr, cc: f"vals[{j}]",
            work=np.diff(rowptr).astype(np.float64) + 2)


def _sets(r: int, vectors: int, tgt: KernelTarget, chains: int) -> int:
    accs = max(1, r * vectors)
    budget = max(tgt.registers - 4, 4)
    return max(1, min(-(-chains // accs), budget // accs, 8))


def _vectors(rows: PanelRows, width: int, vw: int, tgt: KernelTarget, max_vectors: int | None) -> int:
    """Vectors per tile: fill the accumulator registers, keep a D tile within half the per-core cache."""
    budget = max(tgt.registers - 4, 4)
    v = max(1, min(width // vw, budget // max(rows.r, 1)))
    while v > 1 and rows.kp * v * vw * 4 > tgt.cache_bytes // 2:
        v -= 1
    if max_vectors:
        v = max(1, min(v, max_vectors))
    return v


def _emit_block_row(src: Src, rows: PanelRows, ib: str, pt: int, vw: int, u_sets: int,
                    load_d: Callable[[str, str], str], store: Callable[[str, str, int], None], rows_valid: int,
                    bias: bool, activation: str) -> None:
    """Accumulate one block row over one tile of width pt, apply bias/activation, store rows_valid rows."""
    r, c = rows.r, rows.c
    nv = pt // vw
    acc = src.var("acc")
    size = u_sets * r * pt
    src(f'{acc} = T.alloc_buffer(({size},), "float32", scope="local")')
    with src.block(f"for v in T.unroll({size // vw}):"):
        with src.block(f"for vi in T.vectorized({vw}):"):
            src(f"{acc}[v * {vw} + vi] = T.float32(0)")

    def fma(j: str, colx: str, u: int) -> None:
        cc = "cc" if c > 1 else "0"
        rr = "rr" if r > 1 else "0"
        with contextlib.ExitStack() as loops:
            if c > 1:
                loops.enter_context(src.block(f"for cc in T.unroll({c}):"))
            if r > 1:
                loops.enter_context(src.block(f"for rr in T.unroll({r}):"))
            wv = src.var("w")
            src.let(wv, rows.w(j, rr, cc))
            kk = f"{colx} + cc" if c > 1 else colx
            with src.block(f"for vo in T.unroll({nv}):"):
                with src.block(f"for vi in T.vectorized({vw}):"):
                    a = f"{acc}[({u * r} + {rr}) * {pt} + vo * {vw} + vi]"
                    src(f"{a} = {a} + {wv} * {load_d(kk, f'vo * {vw} + vi')}")

    f, e = src.var("f"), src.var("e")
    src.let(f, rows.first(ib))
    src.let(e, rows.end(ib))
    if rows.fixed is not None:
        steps, rest = divmod(rows.fixed, u_sets)
    if u_sets > 1:
        cnt = str(steps) if rows.fixed is not None else f"({e} - {f}) // {u_sets}"
        with src.block(f"for jj in T.serial({cnt}):"):
            for u in range(u_sets):
                j, colx = src.var("j"), src.var("col")
                src.let(j, f"{f} + jj * {u_sets} + {u}")
                src.let(colx, rows.col(j, ib))
                fma(j, colx, u)
        start = f"{f} + {cnt} * {u_sets}"
    else:
        start = f
    if rows.fixed is None or (u_sets > 1 and rest) or u_sets == 1:
        with src.block(f"for j in T.serial({start}, {e}):"):
            colx = src.var("col")
            src.let(colx, rows.col("j", ib))
            fma("j", colx, 0)
    if u_sets > 1:
        with src.block(f"for v in T.unroll({r * nv}):"):
            with src.block(f"for vi in T.vectorized({vw}):"):
                terms = " + ".join(f"{acc}[{u * r * pt} + v * {vw} + vi]" for u in range(u_sets))
                src(f"{acc}[v * {vw} + vi] = {terms}")
    for rr in range(rows_valid):
        row = f"{ib} * {r} + {rr}" if r > 1 else ib
        with src.block(f"for vo in T.unroll({nv}):"):
            with src.block(f"for vi in T.vectorized({vw}):"):
                y = src.var("y")
                a = f"{acc}[{rr * pt} + vo * {vw} + vi]"
                src.let(y, a + (f" + bias[{row}]" if bias else ""))
                src(f"{a} = {emit_activation(src, y, activation)}")
        store(acc, row, rr * pt)


def _tiles(width: int, pt: int, vw: int) -> list[tuple[int, int, int]]:
    """Split [0, width) into (start, tile width, vector width): full tiles, a tile of whole vectors, a remainder."""
    out = [(t * pt, pt, vw) for t in range(width // pt)]
    s = width // pt * pt
    if (width - s) // vw:
        out.append((s, (width - s) // vw * vw, vw))
        s += (width - s) // vw * vw
    if width - s:
        out.append((s, width - s, width - s))
    return out


def _chunks(rows: PanelRows, nbf: int, tgt: KernelTarget) -> np.ndarray | None:
    """Chunks of block rows: several per thread, and small enough (about 6 bytes per entry) that a chunk's
    weights stay in a quarter of the per-core cache while the tiles of the dense operand are swept."""
    if nbf < 2:
        return None
    by_cache = int(rows.work[:nbf].sum() * 6 // max(tgt.cache_bytes // 4, 1)) + 1
    parts = max(tgt.threads * 4 if tgt.threads > 1 else 1, by_cache)
    if parts <= 1:
        return None
    return balanced_chunks(rows.work[:nbf], parts)


def emit_panel_matmul(name: str, *, m: int, rows: PanelRows, tgt: KernelTarget, bias: bool, activation: str,
                      max_vectors: int | None = None, chains: int = FMA_CHAINS, vector_width: int | None = None):
    """TVMScript source of ``Y[M, N] = act(X @ W^T + bias)`` with X transposed into a workspace.

    Returns (src, cptr) where cptr (chunk boundaries over full block rows) is passed after ``rows.arrays``
    (None when there is a single chunk)."""
    L = tgt.lanes
    vw = vector_width or (L if m >= L else min(L, max(pow2_ceil(m), min(4, L))))
    mp = -(-m // vw) * vw
    v = _vectors(rows, mp, vw, tgt, max_vectors)
    pt = v * vw
    k = rows.extra.get("k", rows.kp)
    n, r = rows.n, rows.r
    nbf = n // r
    cptr = _chunks(rows, nbf, tgt)

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
                val = (f"T.if_then_else(mm < {m} and {kx} < {k}, X[T.min(mm, {m - 1}), T.min({kx}, {k - 1})], "
                       f"T.float32(0))") if (mp > m or rows.kp > k) else f"X[mm, {kx}]"
                if rows.kp % kb:
                    with src.block(f"if {kx} < {rows.kp}:"):
                        src(f"XT[{kx}, mm] = {val}")
                else:
                    src(f"XT[{kx}, mm] = {val}")

    tiles = _tiles(mp, pt, vw)

    full = [t for t in tiles if t[1] == pt and t[0] + pt <= m]
    rest = tiles[len(full):]

    def emit(ib: str, rows_valid: int, t0: str, width: int, tvw: int, m_valid: int) -> None:
        def store(acc: str, row: str, off: int) -> None:
            with src.block(f"for vo in T.unroll({width // tvw}):"):
                with src.block(f"for vi in T.vectorized({tvw}):"):
                    if m_valid < width:
                        with src.block(f"if vo * {tvw} + vi < {m_valid}:"):
                            src(f"Y[{t0} + vo * {tvw} + vi, {row}] = {acc}[{off} + vo * {tvw} + vi]")
                    else:
                        src(f"Y[{t0} + vo * {tvw} + vi, {row}] = {acc}[{off} + vo * {tvw} + vi]")

        _emit_block_row(src, rows, ib, width, tvw, _sets(rows.r, width // tvw, tgt, chains),
                        lambda kk, p: f"XT[{kk}, {t0} + {p}]", store, rows_valid, bias, activation)

    def tiles_then_rows(row_scope) -> None:
        """Tiles outermost (one XT tile stays in cache), then the block rows given by row_scope()."""
        def one(t0, width, tvw, m_valid):
            with row_scope() as (ib, rows_valid):
                emit(ib, rows_valid, t0, width, tvw, m_valid)

        if len(full) > 1:
            with src.block(f"for t in T.serial({len(full)}):"):
                one(f"t * {pt}", pt, vw, pt)
        elif full:
            one("0", pt, vw, pt)
        for t0, width, tvw in rest:
            one(str(t0), width, tvw, max(0, min(width, m - t0)))

    @contextlib.contextmanager
    def chunk_rows():
        with src.block("for ib in T.serial(cptr[c], cptr[c + 1]):" if cptr is not None
                       else f"for ib in T.serial({nbf}):"):
            yield "ib", r

    if nbf:
        nchunks = len(cptr) - 1 if cptr is not None else 1
        with src.block(f"for c in {parallel_or_serial(tgt.threads, nchunks)}({nchunks}):"):
            tiles_then_rows(chunk_rows)
    if n % r:
        tiles_then_rows(lambda: contextlib.nullcontext((str(nbf), n % r)))
    return src, cptr


def emit_panel_conv(name: str, *, batch: int, spatial: tuple[int, int], rows: PanelRows, tgt: KernelTarget,
                    bias: bool, activation: str, max_vectors: int | None = None, chains: int = FMA_CHAINS):
    """TVMScript source of the sparse 1x1 convolution ``Y[b, co, p] = act(sum_ci W[co, ci] X[b, ci, p] + bias)``.

    Parallel over (batch, spatial tiles) when there are enough of them, else over chunks of output rows.
    Returns (src, cptr)."""
    L = tgt.lanes
    hw = spatial[0] * spatial[1]
    vw = L if hw >= L else max(1, min(L, pow2_ceil(hw) if pow2_ceil(hw) == hw else hw))
    v = _vectors(rows, -(-hw // vw) * vw, vw, tgt, max_vectors)
    pt = v * vw
    cin, n, r = rows.kp, rows.n, rows.r
    nbf = n // r
    tiles = _tiles(hw, pt, vw)
    full = [t for t in tiles if t[1] == pt]
    by_tiles = tgt.threads <= 1 or batch * len(full) >= 2 * tgt.threads
    cptr = None if by_tiles else _chunks(rows, nbf, tgt)

    src = Src()
    params = [("X4", (batch, cin) + tuple(spatial), "float32")] + list(rows.arrays)
    if cptr is not None:
        params.append(("cptr", (len(cptr),), "int32"))
    if bias:
        params.append(("bias", (n,), "float32"))
    params.append(("Y4", (batch, n) + tuple(spatial), "float32"))
    func_header(src, name, params)
    src(f'X = T.decl_buffer(({batch}, {cin}, {hw}), "float32", data=X4.data)')
    src(f'Y = T.decl_buffer(({batch}, {n}, {hw}), "float32", data=Y4.data)')

    def emit(b: str, ib: str, rows_valid: int, t0: str, width: int, tvw: int) -> None:
        def store(acc: str, row: str, off: int) -> None:
            with src.block(f"for vo in T.unroll({width // tvw}):"):
                with src.block(f"for vi in T.vectorized({tvw}):"):
                    src(f"Y[{b}, {row}, {t0} + vo * {tvw} + vi] = {acc}[{off} + vo * {tvw} + vi]")

        _emit_block_row(src, rows, ib, width, tvw, _sets(r, width // tvw, tgt, chains),
                        lambda kk, p: f"X[{b}, {kk}, {t0} + {p}]", store, rows_valid, bias, activation)

    def all_rows(b: str, t0: str, width: int, tvw: int) -> None:
        if nbf:
            with src.block(f"for ib in T.serial({nbf}):"):
                emit(b, "ib", r, t0, width, tvw)
        if n % r:
            emit(b, str(nbf), n % r, t0, width, tvw)

    if by_tiles:
        if full:
            par = parallel_or_serial(tgt.threads, batch * len(full))
            with src.block(f"for bt in {par}({batch * len(full)}):"):
                src.let("b", f"bt // {len(full)}")
                all_rows("b", f"bt % {len(full)} * {pt}", pt, vw)
        rest = tiles[len(full):]
        if rest:
            with src.block(f"for b in {parallel_or_serial(tgt.threads, batch)}({batch}):"):
                for t0, width, tvw in rest:
                    all_rows("b", str(t0), width, tvw)
    else:
        with src.block(f"for b in T.serial({batch}):"):
            if nbf:
                with src.block(f"for c in T.parallel({len(cptr) - 1}):"):
                    with src.block("for ib in T.serial(cptr[c], cptr[c + 1]):"):
                        for t0, width, tvw in tiles:
                            emit("b", "ib", r, str(t0), width, tvw)
            if n % r:
                for t0, width, tvw in tiles:
                    emit("b", str(nbf), n % r, str(t0), width, tvw)
    return src, cptr
