"""Sparse-times-dense-panel kernels (the "Fast Sparse ConvNets" design): vectorize over the dense operand.

For every block row of the sparse weight (r output rows, blocks of c columns) and every tile of ``PT`` columns of
the dense operand ``D[k, p]`` (p contiguous), accumulate ``acc[rr, p] += w[rr, cc] * D[col + cc, p]``: one scalar
broadcast, ``PT / VW`` vector loads and FMAs per weight. ``U`` independent accumulator sets hide the FMA latency.

When a D tile (K x PT floats) does not fit the L1 budget, K is split into panels of ``kc`` rows and the weight
entries are stored panel-major (for each panel, the rows' entries of that panel): every panel's D tile stays in
L1 while all rows of a chunk are swept, partial sums go through a ``YT`` workspace (L2).

* matmul: ``D = X^T`` (the kernel first transposes X[M, K] into a zero-padded ``XT[Kp, Mp]`` workspace); results
  are stored transposed into Y[M, N].
* conv 1x1 (NCHW): ``D = X[b]`` ([Cin, H*W]) read in place, results stored contiguously into Y[b] ([Cout, H*W]).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.forms import Encoded
from sparseforge.ir.forms.bsr import bsr_pack

from ._common import KernelTarget, Src, balanced_chunks, func_header, index_dtype, parallel_or_serial, pow2_ceil
from .activations import emit_activation
from ._transpose import emit_transpose

FMA_CHAINS = 8  # independent accumulators needed to hide FMA latency (2 pipes x 4 cycles on Zen / Skylake)
L1_BUDGET = 64 * 1024  # bytes of a D panel (a bit over L1: fewer partial-sum round trips per row)
DIRECT_STORE_MAX_M = 16  # above this, results go through a contiguous YT workspace (strided stores thrash the TLB)


@dataclass(frozen=True)
class Plan:
    """Tiling of a panel kernel: vector width, vectors per tile, tile width, K panel rows, number of panels."""

    vw: int
    v: int
    pt: int
    kc: int
    panels: int
    chains: int = FMA_CHAINS


def plan_panel(width: int, kp: int, r: int, c: int, tgt: KernelTarget, *, max_vectors: int | None = None,
               vector_width: int | None = None, kc: int | None = None, l1_bytes: int = L1_BUDGET,
               chains: int = FMA_CHAINS) -> Plan:
    """Tile plan for a dense operand of ``width`` columns (M or H*W) and ``kp`` rows."""
    L = tgt.lanes
    if vector_width:
        vw = vector_width
    elif width >= L:
        vw = L
    else:
        vw = min(L, max(pow2_ceil(width), min(4, L)))
    budget = max(tgt.registers - 4, 4)
    v = max(1, min(-(-width // vw), budget // max(r, 1)))
    v = 1 << (v.bit_length() - 1)  # a power of two: tiles divide the usual batch sizes
    if max_vectors:
        v = max(1, min(v, max_vectors))
    pt = v * vw
    if kc is None:
        kc = kp if kp * pt * 4 <= l1_bytes else max(c, l1_bytes // (pt * 4) // c * c)
    kc = max(c, min(-(-kp // c) * c, -(-kc // c) * c))
    return Plan(vw=vw, v=v, pt=pt, kc=kc, panels=-(-kp // kc), chains=chains)


@dataclass
class PanelRows:
    """Sparse weight rows as seen by the panel kernel.

    r, c: block shape; nb: block rows (the last one may be partial); n: valid rows; kp: padded reduction length
    (rows of the dense operand that may be read); arrays: constant buffers (name, shape, dtype) in calling order;
    first/end(ib, p): entry range of block row ib in K panel p; col(j, ib): first column of entry j;
    w(j, rr, cc): weight value; work: per block row cost (for chunking); fixed: entries per (block row, panel)
    when constant (N:M).
    """

    r: int
    c: int
    nb: int
    n: int
    kp: int
    arrays: list
    first: Callable[[str, str], str]
    end: Callable[[str, str], str]
    col: Callable[[str, str], str]
    w: Callable[[str, str, str], str]
    work: np.ndarray
    fixed: int | None = None
    extra: dict = field(default_factory=dict)


def panel_major(mask_rows: np.ndarray, cols: np.ndarray, kc: int, nrows: int, panels: int):
    """Order of entries sorted by (panel, row) and the flattened pointer [panels * nrows + 1]."""
    panel = cols // kc
    order = np.lexsort((cols, mask_rows, panel))
    key = panel[order] * nrows + mask_rows[order]
    ptr = np.searchsorted(key, np.arange(panels * nrows + 1), side="left").astype(np.int32)
    return order, ptr


def csr_panel_rows(enc: Encoded, plan: Plan, prefix: str = ""):
    """(PanelRows, constants): the nonzeros of an encoded operand (any form) in panel-major order,
    (vals, idx, ptr[panels * N + 1]); ``prefix`` is put before the buffer names (two weights in one kernel)."""
    n, k = enc.shape
    rows, cols, vals = forms.get(enc.fmt).entries(enc)
    order, ptr = panel_major(rows, cols, plan.kc, n, plan.panels)
    vals = vals[order]
    idx = cols[order].astype(index_dtype(k))
    if not len(vals):
        vals, idx = np.zeros(1, np.float32), np.zeros(1, idx.dtype)
    P = plan.panels
    vn, xn, pn = f"{prefix}vals", f"{prefix}idx", f"{prefix}ptr"
    rows_obj = PanelRows(
        r=1, c=1, nb=n, n=n, kp=k,
        arrays=[(vn, vals.shape, "float32"), (xn, idx.shape, str(idx.dtype)), (pn, ptr.shape, "int32")],
        first=lambda ib, p: f"{pn}[{p} * {n} + {ib}]" if P > 1 else f"{pn}[{ib}]",
        end=lambda ib, p: f"{pn}[{p} * {n} + {ib} + 1]" if P > 1 else f"{pn}[{ib} + 1]",
        col=lambda j, ib: f'T.Cast("int32", {xn}[{j}])', w=lambda j, rr, cc: f"{vn}[{j}]",
        work=np.bincount(rows, minlength=n).astype(np.float64) + 2 * P)
    return rows_obj, (vals, idx, ptr)


def bsr_panel_rows(enc: Encoded, r: int, c: int, plan: Plan, prefix: str = ""):
    """(PanelRows, constants): the r x c blocks of an encoded operand (any form, any stored block shape) in
    panel-major order, (data[nnzb, r, c], bidx, ptr[panels * NB + 1]); ``prefix`` as for :func:`csr_panel_rows`."""
    n, k = enc.shape
    data, bidx, bptr = bsr_pack(enc, r, c)
    nb, kb = len(bptr) - 1, -(-k // c)
    brow = np.repeat(np.arange(nb), np.diff(bptr))
    bcol = bidx.astype(np.int64)[:len(brow)] * c
    order, ptr = panel_major(brow, bcol, plan.kc, nb, plan.panels)
    if len(brow):
        data, bidx = data[order], bidx[order]
    P = plan.panels
    dn, xn, pn = f"{prefix}data", f"{prefix}bidx", f"{prefix}ptr"
    rows_obj = PanelRows(
        r=r, c=c, nb=nb, n=n, kp=kb * c,
        arrays=[(dn, data.shape, "float32"), (xn, bidx.shape, str(bidx.dtype)), (pn, ptr.shape, "int32")],
        first=lambda ib, p: f"{pn}[{p} * {nb} + {ib}]" if P > 1 else f"{pn}[{ib}]",
        end=lambda ib, p: f"{pn}[{p} * {nb} + {ib} + 1]" if P > 1 else f"{pn}[{ib} + 1]",
        col=lambda j, ib: f'T.Cast("int32", {xn}[{j}]) * {c}', w=lambda j, rr, cc: f"{dn}[{j}, {rr}, {cc}]",
        work=(np.diff(bptr) * r * c + r * P).astype(np.float64), extra={"k": k})
    return rows_obj, (data, bidx, ptr)


def panel_rows(weight: Encoded, block: tuple[int, int], plan: Plan, prefix: str = ""):
    """(PanelRows, constants, format name) of an encoded operand: CSR over its nonzeros for ``block`` (1, 1), else
    BSR ``r x c``."""
    r, c = block
    if (r, c) == (1, 1):
        return (*csr_panel_rows(weight, plan, prefix), "csr")
    return (*bsr_panel_rows(weight, r, c, plan, prefix), f"bsr{r}x{c}")


def _sets(r: int, vectors: int, tgt: KernelTarget, chains: int) -> int:
    accs = max(1, r * vectors)
    budget = max(tgt.registers - 4, 4)
    return max(1, min(-(-chains // accs), budget // accs, 8))


def _emit_block_row(src: Src, rows: PanelRows, ib: str, p: str, pt: int, vw: int, u_sets: int,
                    load_d: Callable[[str, str], str], init: Callable[[str, str, int], None] | None,
                    finish: Callable[[str, int], None], rows_valid: int) -> None:
    """Accumulate one block row over one tile (width pt) and K panel p; ``init`` loads partial sums (None:
    start from zero); ``finish(acc, rr)`` consumes row rr of the result."""
    r, c = rows.r, rows.c
    nv = pt // vw
    acc = src.var("acc")
    size = u_sets * r * pt
    src(f'{acc} = T.alloc_buffer(({size},), "float32", scope="local")')
    with src.block(f"for v in T.unroll({size // vw}):"):
        with src.block(f"for vi in T.vectorized({vw}):"):
            src(f"{acc}[v * {vw} + vi] = T.float32(0)")
    if init is not None:
        for rr in range(r):
            init(acc, f"{ib} * {r} + {rr}" if r > 1 else ib, rr * pt)

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
    src.let(f, rows.first(ib, p))
    src.let(e, rows.end(ib, p))
    rest = None
    if rows.fixed is not None:
        steps, rest = divmod(rows.fixed, u_sets)
    if u_sets > 1:
        # set u takes the u-th contiguous segment of the entries: the U index loads of one step are not
        # adjacent, so LLVM keeps them scalar (adjacent ones become a vector load plus lane extracts)
        cnt = src.var("seg")
        src.let(cnt, str(steps) if rows.fixed is not None else f"({e} - {f}) // {u_sets}")
        with src.block(f"for jj in T.serial({cnt}):"):
            for u in range(u_sets):
                j, colx = src.var("j"), src.var("col")
                src.let(j, f"{f} + {u} * {cnt} + jj")
                src.let(colx, rows.col(j, ib))
                fma(j, colx, u)
        start = f"{f} + {cnt} * {u_sets}"
    else:
        start = f
    if rows.fixed is None or rest or u_sets == 1:
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
        finish(acc, rr)


def _epilogue(src: Src, acc: str, off: int, pt: int, vw: int, row: str, bias: str | None, activation: str) -> None:
    """acc = act(acc + bias[row]); ``bias``: the bias buffer's name (None: no bias)."""
    with src.block(f"for vo in T.unroll({pt // vw}):"):
        with src.block(f"for vi in T.vectorized({vw}):"):
            y = src.var("y")
            a = f"{acc}[{off} + vo * {vw} + vi]"
            src.let(y, a + (f" + {bias}[{row}]" if bias else ""))
            src(f"{a} = {emit_activation(src, y, activation)}")


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


def _chunks(rows: PanelRows, nbf: int, tgt: KernelTarget, min_parts: int) -> np.ndarray | None:
    """Chunks of block rows: several per thread, and small enough (about 6 bytes per entry) that a chunk's
    weights stay in a quarter of the per-core cache while the tiles of the dense operand are swept."""
    if nbf < 2:
        return None
    by_cache = int(rows.work[:nbf].sum() * 6 // max(tgt.cache_bytes // 4, 1)) + 1
    parts = max(min_parts, by_cache)
    if parts <= 1:
        return None
    return balanced_chunks(rows.work[:nbf], parts)


class _Sweep:
    """Shared driver: for each tile, for each K panel, for each block row of a chunk: accumulate and finish."""

    def __init__(self, src: Src, rows: PanelRows, plan: Plan, tgt: KernelTarget, chains: int, bias: str | None,
                 activation: str, load_d, store, yt, post=None):
        self.src, self.rows, self.plan, self.tgt, self.chains = src, rows, plan, tgt, chains
        self.bias, self.activation, self.load_d, self.store, self.yt = bias, activation, load_d, store, yt
        self.post = post  # post(t0, width, m_valid, row_scope): runs after a tile is complete

    def tile(self, t0: str, width: int, tvw: int, m_valid: int, row_scope) -> None:
        src, rows, P = self.src, self.rows, self.plan.panels
        u = _sets(rows.r, width // tvw, self.tgt, self.chains)

        def rowname(ib, rr):
            return f"{ib} * {rows.r} + {rr}" if rows.r > 1 else ib

        def body(p: str, first: bool, last: bool) -> None:
            with row_scope() as (ib, rows_valid):
                def init(acc, row, off):
                    with src.block(f"for vo in T.unroll({width // tvw}):"):
                        with src.block(f"for vi in T.vectorized({tvw}):"):
                            src(f"{acc}[{off} + vo * {tvw} + vi] = {self.yt(row, f'{t0} + vo * {tvw} + vi')}")

                def finish(acc, rr):
                    row, off = rowname(ib, rr), rr * width
                    if last:
                        _epilogue(src, acc, off, width, tvw, row, self.bias, self.activation)
                        self.store(acc, row, off, t0, width, tvw, m_valid)
                    else:
                        with src.block(f"for vo in T.unroll({width // tvw}):"):
                            with src.block(f"for vi in T.vectorized({tvw}):"):
                                src(f"{self.yt(row, f'{t0} + vo * {tvw} + vi')} = {acc}[{off} + vo * {tvw} + vi]")

                # non-final panels store all r rows (the workspace is padded), the final one rows_valid
                _emit_block_row(src, rows, ib, p, width, tvw, u, lambda kk, q: self.load_d(kk, t0, q),
                                None if first else init, finish, rows_valid if last else rows.r)

        if P == 1:
            body("0", True, True)
        else:
            body("0", True, False)
            if P > 2:
                with src.block(f"for p in T.serial(1, {P - 1}):"):
                    body("p", False, False)
            body(str(P - 1), False, True)
        if self.post is not None:
            self.post(t0, width, m_valid, row_scope)

    def tiles(self, tiles, full_count: int, pt: int, vw: int, valid_of, row_scope) -> None:
        if full_count > 1:
            with self.src.block(f"for t in T.serial({full_count}):"):
                self.tile(f"t * {pt}", pt, vw, pt, row_scope)
        elif full_count:
            self.tile("0", pt, vw, pt, row_scope)
        for t0, width, tvw in tiles[full_count:]:
            self.tile(str(t0), width, tvw, valid_of(t0, width), row_scope)


def _row_scopes(src: Src, cptr, nbf: int, r: int, cptr_name: str = "cptr"):
    @contextlib.contextmanager
    def chunk_rows():
        with src.block(f"for ib in T.serial({cptr_name}[c], {cptr_name}[c + 1]):" if cptr is not None
                       else f"for ib in T.serial({nbf}):"):
            yield "ib", r

    chunk_rows.bounds = lambda: contextlib.nullcontext(  # output rows of chunk c
        (f"{cptr_name}[c] * {r}", f"{cptr_name}[c + 1] * {r}") if cptr is not None else ("0", str(nbf * r)))
    return chunk_rows


def emit_panel_matmul(name: str, *, m: int, rows: PanelRows, plan: Plan, tgt: KernelTarget, bias: bool,
                      activation: str):
    """TVMScript source of ``Y[M, N] = act(X @ W^T + bias)`` with X transposed into a workspace.

    Returns (src, cptr) where cptr (chunk boundaries over full block rows) is passed after ``rows.arrays``
    (None when there is a single chunk)."""
    mp = -(-m // plan.vw) * plan.vw
    k = rows.extra.get("k", rows.kp)
    cptr = _chunks(rows, rows.n // rows.r, tgt, tgt.threads * 4 if tgt.threads > 1 else 1)
    src = Src()
    params = [("X", (m, k), "float32")] + list(rows.arrays)
    if cptr is not None:
        params.append(("cptr", (len(cptr),), "int32"))
    if bias:
        params.append(("bias", (rows.n,), "float32"))
    params.append(("Y", (m, rows.n), "float32"))
    func_header(src, name, params)
    emit_transposed_input(src, m=m, k=k, mp=mp, rows=plan.panels * plan.kc, tgt=tgt)
    emit_sweep_into_y(src, m=m, mp=mp, rows=rows, plan=plan, tgt=tgt, cptr=cptr, bias="bias" if bias else None,
                      activation=activation, load_d=lambda kk, t0, q: f"XT[({kk}) * {mp} + {t0} + {q}]")
    return src, cptr


def emit_transposed_input(src: Src, *, m: int, k: int, mp: int, rows: int, tgt: KernelTarget) -> None:
    """``X[M, K]`` -> ``XT[rows, mp]`` (flat, ``rows >= K``), zero padded: whole L x L blocks through in-register
    transposes, the edges (rows past K / columns past the last whole block of M, padding) element by element.
    Declares ``Xf`` (X flat) and ``XT``."""
    L = tgt.lanes
    mf, kf = m // L * L, k // L * L
    src(f'Xf = T.decl_buffer(({m * k},), "float32", data=X.data)')
    src(f'XT = T.alloc_buffer(({rows * mp},), "float32")')

    def x_or_zero(mm: str, kx: str, check_m: bool, check_k: bool) -> str:
        conds = ([f"{mm} < {m}"] if check_m else []) + ([f"{kx} < {k}"] if check_k else [])
        load = f"Xf[T.min({mm}, {m - 1}) * {k} + T.min({kx}, {k - 1})]" if conds else f"Xf[{mm} * {k} + {kx}]"
        return f"T.if_then_else({' and '.join(conds)}, {load}, T.float32(0))" if conds else load

    if mf and kf:
        with src.block(f"for kb in {parallel_or_serial(tgt.threads, kf // L)}({kf // L}):"):
            with src.block(f"for mb in T.serial({mf // L}):"):
                emit_transpose(src, L, lambda j: f"Xf[T.Ramp((mb * {L} + {j}) * {k} + kb * {L}, 1, {L})]",
                               lambda ln, e: src(f"XT[T.Ramp((kb * {L} + {ln}) * {mp} + mb * {L}, 1, {L})] = {e}"))
    if mp > mf and kf:  # columns (M) past the whole blocks, rows below kf
        with src.block(f"for kx in T.serial({kf}):"):
            with src.block(f"for mm in T.serial({mf}, {mp}):"):
                src(f"XT[kx * {mp} + mm] = {x_or_zero('mm', 'kx', mp > m, False)}")
    if rows > kf:  # rows (K) past the whole blocks, padding rows included
        with src.block(f"for kx in T.serial({kf}, {rows}):"):
            with src.block(f"for mm in T.serial({mp}):"):
                src(f"XT[kx * {mp} + mm] = {x_or_zero('mm', 'kx', mp > m, rows > k)}")


def _sweep_all_rows(src: Src, sweep: _Sweep, rows: PanelRows, plan: Plan, tgt: KernelTarget, cptr, cptr_name: str,
                    m: int, mp: int) -> None:
    """Every tile of the ``mp`` columns for every block row: chunks of full block rows in a parallel loop, then the
    rows of a partial last block row."""
    vw, pt, r = plan.vw, plan.pt, rows.r
    nbf = rows.n // r
    tiles = _tiles(mp, pt, vw)
    full = len([t for t in tiles if t[1] == pt and t[0] + pt <= m])
    valid_of = lambda t0, width: max(0, min(width, m - t0))  # noqa: E731
    if nbf:
        nchunks = len(cptr) - 1 if cptr is not None else 1
        scope = _row_scopes(src, cptr, nbf, r, cptr_name)
        with src.block(f"for c in {parallel_or_serial(tgt.threads, nchunks)}({nchunks}):"):
            sweep.tiles(tiles, full, pt, vw, valid_of, scope)
    if rows.n % r:
        tail = lambda: contextlib.nullcontext((str(nbf), rows.n % r))  # noqa: E731
        tail.bounds = lambda: contextlib.nullcontext((str(nbf * r), str(rows.n)))
        sweep.tiles(tiles, full, pt, vw, valid_of, tail)


def emit_sweep_into_y(src: Src, *, m: int, mp: int, rows: PanelRows, plan: Plan, tgt: KernelTarget, cptr,
                      bias: str | None, activation: str, load_d, cptr_name: str = "cptr") -> None:
    """``Y[M, N] = act(W D + bias)^T`` for a dense operand ``D[K, mp]`` read by ``load_d(kk, t0, q)``; results go
    through a contiguous ``YT[N, mp]`` workspace (transposed into Y per chunk, in registers) when K is split in
    panels or M is large, else straight into Y."""
    n, r, L = rows.n, rows.r, tgt.lanes
    src(f'Yf = T.decl_buffer(({m * n},), "float32", data=Y.data)')
    yf, yt = "Yf", "YT"
    yt_at = None
    use_yt = plan.panels > 1 or m > DIRECT_STORE_MAX_M
    if use_yt:
        src(f'{yt} = T.alloc_buffer(({rows.nb * r * mp},), "float32")')
        yt_at = lambda row, col: f"{yt}[({row}) * {mp} + {col}]"  # noqa: E731

    def store(acc, row, off, t0, width, tvw, m_valid):
        with src.block(f"for vo in T.unroll({width // tvw}):"):
            with src.block(f"for vi in T.vectorized({tvw}):"):
                line = f"{yf}[({t0} + vo * {tvw} + vi) * {n} + {row}] = {acc}[{off} + vo * {tvw} + vi]"
                if use_yt:  # contiguous; transposed into Y per chunk by `post`
                    src(f"{yt_at(row, f'{t0} + vo * {tvw} + vi')} = {acc}[{off} + vo * {tvw} + vi]")
                elif m_valid < width:
                    with src.block(f"if vo * {tvw} + vi < {m_valid}:"):
                        src(line)
                else:
                    src(line)

    def post(t0, width, m_valid, row_scope):
        """Y[t0 + mm, rows] = YT[rows, t0 + mm] for the rows of this chunk: whole L x L blocks through in-register
        transposes (stores contiguous along N), the remaining rows and columns element by element."""
        if not use_yt or m_valid == 0:
            return
        with row_scope.bounds() as (r0, r1):
            mv = m_valid // L * L
            with src.block(f"for nq in T.serial(({r1} - {r0}) // {L}):"):
                rb = src.let(src.var("rb"), f"{r0} + nq * {L}")
                if mv:
                    with src.block(f"for mb in T.serial({mv // L}):"):
                        emit_transpose(
                            src, L, lambda j: f"{yt}[T.Ramp(({rb} + {j}) * {mp} + {t0} + mb * {L}, 1, {L})]",
                            lambda ln, e: src(f"{yf}[T.Ramp(({t0} + mb * {L} + {ln}) * {n} + {rb}, 1, {L})] = {e}"))
                if m_valid > mv:
                    with src.block(f"for mm in T.serial({mv}, {m_valid}):"):
                        with src.block(f"for nv in T.vectorized({L}):"):
                            src(f"{yf}[({t0} + mm) * {n} + {rb} + nv] = {yt}[({rb} + nv) * {mp} + {t0} + mm]")
            with src.block(f"for nn in T.serial({r0} + ({r1} - {r0}) // {L} * {L}, {r1}):"):
                with src.block(f"for mm in T.serial({m_valid}):"):
                    src(f"{yf}[({t0} + mm) * {n} + nn] = {yt}[nn * {mp} + {t0} + mm]")

    sweep = _Sweep(src, rows, plan, tgt, plan.chains, bias, activation, load_d, store, yt_at, post)
    _sweep_all_rows(src, sweep, rows, plan, tgt, cptr, cptr_name, m, mp)


def emit_sweep_into_workspace(src: Src, *, m: int, mp: int, rows: PanelRows, plan: Plan, tgt: KernelTarget, cptr,
                              bias: str | None, activation: str, load_d, out: str, cptr_name: str = "cptr") -> None:
    """``out[N', mp] = act(W D + bias)`` into the already allocated flat workspace ``out`` (``N' >= nb * r``
    rows): the panel layout a second panel sweep reads as its dense operand. Padding columns (past M) hold
    ``act(bias)``; rows past N are not written."""
    at = lambda row, col: f"{out}[({row}) * {mp} + {col}]"  # noqa: E731

    def store(acc, row, off, t0, width, tvw, m_valid):
        with src.block(f"for vo in T.unroll({width // tvw}):"):
            with src.block(f"for vi in T.vectorized({tvw}):"):
                src(f"{at(row, f'{t0} + vo * {tvw} + vi')} = {acc}[{off} + vo * {tvw} + vi]")

    sweep = _Sweep(src, rows, plan, tgt, plan.chains, bias, activation, load_d, store, at)
    _sweep_all_rows(src, sweep, rows, plan, tgt, cptr, cptr_name, m, mp)


@dataclass
class ConvIO:
    """How a panel convolution reads its input and writes its output.

    ``params_in``/``params_out``: the function's activation parameters; ``width``: positions swept per image (the
    dense operand's columns); ``prologue(src)``: emitted first (declarations, input preparation);
    ``load(b, kk, t0, q)``: the dense operand at row ``kk`` (the expression of :attr:`PanelRows.col`), column
    ``t0 + q``; ``store(b, acc, row, off, t0, width, tvw)``: writes a finished tile row; ``epilogue(src)``: emitted
    last (after every tile is stored)."""

    params_in: list
    params_out: list
    width: int
    prologue: Callable
    load: Callable[[str, str, str, str], str]
    store: Callable
    epilogue: Callable | None = None


def nchw_io(src: Src, batch: int, cin: int, n: int, spatial: tuple[int, int]) -> ConvIO:
    """The 1x1 convolution's IO: ``X4[B, Cin, H, W]`` read in place, ``Y4[B, N, H, W]`` written contiguously."""
    hw = spatial[0] * spatial[1]

    def prologue(src):
        src(f'X = T.decl_buffer(({batch}, {cin}, {hw}), "float32", data=X4.data)')
        src(f'Y = T.decl_buffer(({batch}, {n}, {hw}), "float32", data=Y4.data)')

    def store(b, acc, row, off, t0, width, tvw):
        with src.block(f"for vo in T.unroll({width // tvw}):"):
            with src.block(f"for vi in T.vectorized({tvw}):"):
                src(f"Y[{b}, {row}, {t0} + vo * {tvw} + vi] = {acc}[{off} + vo * {tvw} + vi]")

    return ConvIO([("X4", (batch, cin) + tuple(spatial), "float32")],
                  [("Y4", (batch, n) + tuple(spatial), "float32")], hw, prologue,
                  lambda b, kk, t0, q: f"X[{b}, {kk}, {t0} + {q}]", store)


def emit_panel_conv(name: str, *, batch: int, spatial: tuple[int, int] | None = None, rows: PanelRows, plan: Plan,
                    tgt: KernelTarget, bias: bool, activation: str, io=None):
    """TVMScript source of the sparse 1x1 convolution ``Y[b, co, p] = act(sum_ci W[co, ci] X[b, ci, p] + bias)``,
    or, with ``io`` (a function of the :class:`Src` giving a :class:`ConvIO`), of any convolution whose dense
    operand is swept ``io.width`` positions per image.

    Parallel over (batch, spatial tiles) when there are enough of them, else over chunks of output rows.
    Returns (src, cptr)."""
    src = Src()
    n, r = rows.n, rows.r
    conv_io = io(src) if io is not None else nchw_io(src, batch, rows.kp, n, spatial)
    hw = conv_io.width
    vw, pt = plan.vw, plan.pt
    nbf = n // r
    tiles = _tiles(hw, pt, vw)
    full = len([t for t in tiles if t[1] == pt])
    by_tiles = tgt.threads <= 1 or batch * full >= 2 * tgt.threads
    cptr = None if by_tiles else _chunks(rows, nbf, tgt, tgt.threads * 4)

    params = list(conv_io.params_in) + list(rows.arrays)
    if cptr is not None:
        params.append(("cptr", (len(cptr),), "int32"))
    if bias:
        params.append(("bias", (n,), "float32"))
    params += list(conv_io.params_out)
    func_header(src, name, params)
    conv_io.prologue(src)
    if plan.panels > 1:
        src(f'YT = T.alloc_buffer(({batch}, {rows.nb * r}, {hw}), "float32")')

    def make_sweep(b: str) -> _Sweep:
        def store(acc, row, off, t0, width, tvw, m_valid):
            conv_io.store(b, acc, row, off, t0, width, tvw)

        yt = (lambda row, col: f"YT[{b}, {row}, {col}]") if plan.panels > 1 else None
        return _Sweep(src, rows, plan, tgt, plan.chains, "bias" if bias else None, activation,
                      lambda kk, t0, q: conv_io.load(b, kk, t0, q), store, yt)

    def all_rows():
        @contextlib.contextmanager
        def scope():
            with src.block(f"for ib in T.serial({nbf}):"):
                yield "ib", r
        return scope

    def tail_rows():
        return lambda: contextlib.nullcontext((str(nbf), n % r))

    valid_of = lambda t0, width: width  # noqa: E731
    if by_tiles:
        if full:
            par = parallel_or_serial(tgt.threads, batch * full)
            with src.block(f"for bt in {par}({batch * full}):"):
                src.let("b", f"bt // {full}")
                sweep = make_sweep("b")
                for scope in ([all_rows()] if nbf else []) + ([tail_rows()] if n % r else []):
                    sweep.tile(f"bt % {full} * {pt}", pt, vw, pt, scope)
        if tiles[full:]:
            with src.block(f"for b in {parallel_or_serial(tgt.threads, batch)}({batch}):"):
                sweep = make_sweep("b")
                for t0, width, tvw in tiles[full:]:
                    for scope in ([all_rows()] if nbf else []) + ([tail_rows()] if n % r else []):
                        sweep.tile(str(t0), width, tvw, width, scope)
    else:
        with src.block(f"for b in T.serial({batch}):"):
            sweep = make_sweep("b")
            if nbf:
                with src.block(f"for c in T.parallel({len(cptr) - 1}):"):
                    sweep.tiles(tiles, full, pt, vw, valid_of, _row_scopes(src, cptr, nbf, r))
            if n % r:
                sweep.tiles(tiles, full, pt, vw, valid_of, tail_rows())
    if conv_io.epilogue is not None:
        conv_io.epilogue(src)
    return src, cptr
