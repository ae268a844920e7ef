"""Large-M CUDA kernel: shared-memory tiles of the dense operand, a register tile of outputs per thread.

Matmul ``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias)`` (X row-major) and 1x1 convolution
``Y[b, co, p] = act(sum_ci W[co, ci] X[b, ci, p] + bias[co])`` (NCHW, p = h*W + w), float32.

A thread block owns TN output rows (``NW`` warps x ``RB`` work items of ``rs`` rows; blocks taller than 4 rows
are split into slices of ``rs`` rows) and TM = 32*MR columns of M (or pixels). For each K panel of ``tk``
columns the block copies the X tile into shared memory (coalesced global loads along K for matmul / along pixels
for conv; stored [tk][TM+1], padded against bank conflicts), then every warp walks its rows' entries in that
panel (K-panel-major index arrays, :mod:`._pack`): values/indices are warp-uniform loads, lane t reads X columns
t, t+32, ... (conflict-free) and keeps ``RB*rs*MR`` accumulators. Write-back: matmul transposes the tile through
shared memory so Y rows are written coalesced along N; conv writes Y[b, co, pixels] directly (coalesced along
pixels). Bias and activation fused.

Exact up to summation order. Any sizes (guards on M, N, K and pixels); empty rows give act(bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

from ._emit import WARP, Src, epilogue, func_header, guard
from ._rows import SMS

SMEM_FLOATS = 12288  # 48 KiB of static shared memory per block


@dataclass(frozen=True)
class PanelPlan:
    mr: int  # columns of M (pixels) per lane: TM = 32 * mr
    rb: int  # block rows per warp
    nw: int  # warps per block
    tk: int  # K panel width
    rs: int = 1  # rows of a block per work item

    @property
    def tm(self) -> int:
        return WARP * self.mr


def panel_unit(c: int = 1, group: int = 1) -> int:
    """The panel width must be a multiple of this (whole blocks / groups, whole warps for the tile copy)."""
    u = WARP
    for v in (c, group):
        u = u * v // gcd(u, v)
    return u


def panel_split(r: int) -> int:
    """Rows of a block per work item: r up to 4, else its largest divisor <= 4."""
    return r if r <= 4 else max(d for d in range(1, 5) if r % d == 0)


def plan_panel(m_extent: int, k: int, r: int, nb: int, *, unit: int = WARP, batch: int = 1, mr: int | None = None,
               rb: int | None = None, nw: int | None = None, tk: int | None = None,
               rs: int | None = None) -> PanelPlan:
    """Tile sizes. Defaults from a sweep on an H100 (M = 32/128; 4096x4096, 768x3072; 90 % unstructured, 4x1,
    16x16): one column per lane (TM = 32, so the K panel can be 256 wide: more work per panel and barrier),
    8 warps, RB from 32 accumulators down until the grid has two blocks per SM; MR > 1 (up to 4) only when asked
    (fewer blocks, then fewer columns, are dropped first); grids still below one block per SM get 4 warps, then
    thinner block slices (rs). tk: as wide as 48 KiB of shared memory allows (<= 256)."""
    auto_mr, auto_rb, auto_nw, auto_rs = mr is None, rb is None, nw is None, rs is None
    rs = rs or panel_split(r)
    if r % rs:
        raise ValueError(f"rs={rs} must divide the block rows {r}")
    nw = nw or 8
    mr = mr or 1
    rb = rb or max(1, WARP // (rs * mr))

    def blocks(mr_, rb_):
        return -(-(nb * (r // rs)) // (nw * rb_)) * -(-m_extent // (WARP * mr_)) * batch

    while auto_rb and rb > 1 and blocks(mr, rb) < 2 * SMS:
        rb //= 2
    while auto_mr and mr > 1 and blocks(mr, rb) < SMS:
        mr //= 2
    while auto_nw and nw > 4 and blocks(mr, rb) < SMS:
        nw //= 2
    while auto_rs and rs > 1 and blocks(mr, rb) < SMS:
        rs = max(d for d in range(1, rs) if r % d == 0)
    r = rs
    tmp = WARP * mr + 1
    if tk is None:
        kcap = -(-k // unit) * unit
        tk = max(unit, min(256 // unit * unit, SMEM_FLOATS // tmp // unit * unit, kcap))
    if tk % unit:
        raise ValueError(f"panel width {tk} must be a multiple of {unit}")
    if max(tk, nw * rb * r) * tmp > SMEM_FLOATS:
        raise ValueError(f"panel tile ({tk} x {tmp}) or output tile ({nw * rb * r} x {tmp}) exceeds 48 KiB of "
                         "shared memory; use smaller blocks, mr/rb/tk, or variant='rows'")
    return PanelPlan(mr=mr, rb=rb, nw=nw, tk=tk, rs=rs)


def emit_panel(src: Src, name: str, pat, plan: PanelPlan, *, m: int, bias: bool, activation: str,
               conv: tuple[int, int, int] | None = None) -> dict:
    """conv: (batch, height, width) for the NCHW 1x1 convolution; else a matmul with M = ``m``."""
    C, NB, N, K, TK = pat.c, pat.nb, pat.n, pat.k, plan.tk
    MR, RB, NW, TM, R = plan.mr, plan.rb, plan.nw, plan.tm, plan.rs
    if pat.r % R:
        raise ValueError(f"plan rows per item {R} must divide the block rows {pat.r}")
    S = pat.r // R  # work items per block row
    NBV = NB * S
    TMP = TM + 1
    TN = NW * RB * R
    P = -(-K // TK)
    ACC = RB * R * MR
    NT = NW * WARP
    if conv:
        batch, height, width = conv
        extent = height * width
        params = [("X", (batch, K, height, width), "float32")]
    else:
        batch, extent = 1, m
        params = [("X", (m, K), "float32")]
    params += list(pat.arrays)
    if bias:
        params.append(("bias", (N,), "float32"))
    params.append(("Y", (batch, N, height, width) if conv else (m, N), "float32"))
    GN, GM = -(-NBV // (NW * RB)), -(-extent // TM)
    smem = max(TK, TN) * TMP
    func_header(src, name, params)
    if conv:
        src(f'Xf = T.decl_buffer(({batch}, {K}, {extent}), "float32", data=X.data)')
        src(f'Yf = T.decl_buffer(({batch}, {N}, {extent}), "float32", data=Y.data)')
    with src.block(f'for bx in T.thread_binding({GN}, thread="blockIdx.x"):'), \
            src.block(f'for by in T.thread_binding({GM}, thread="blockIdx.y"):'), \
            src.block(f'for bz in T.thread_binding({batch}, thread="blockIdx.z"):' if batch > 1 else None):
        b = "bz" if batch > 1 else "0"
        src(f'S = T.alloc_buffer(({smem},), "float32", scope="shared")')
        with src.block(f'for ty in T.thread_binding({NW}, thread="threadIdx.y"):'), \
                src.block(f'for tx in T.thread_binding({WARP}, thread="threadIdx.x"):'):
            src(f'acc = T.alloc_buffer(({ACC},), "float32", scope="local")')
            src(f'xv = T.alloc_buffer(({MR},), "float32", scope="local")')
            with src.block(f"for q in T.unroll({ACC}):"):
                src("acc[q] = T.float32(0)")
            with src.block(f"for p in T.serial({P}):"):
                # ---- X tile -> S[kk * TMP + col], zero outside X
                with src.block(f"for it in T.serial({TK * TM // NT}):"):
                    src.let("f", f"(it * {NW} + ty) * {WARP} + tx")
                    if conv:
                        src.let("pp", f"f % {TM}")
                        src.let("kk", f"f // {TM}")
                        col, row = "pp", "kk"
                    else:
                        src.let("kk", f"f % {TK}")
                        src.let("pp", f"f // {TK}")
                        col, row = "pp", "kk"
                    src.let("kg", f"p * {TK} + kk")
                    src.let("pg", f"by * {TM} + pp")
                    conds = [f"kg < {K}" if P * TK != K else None, f"pg < {extent}" if GM * TM != extent else None]
                    kx = f"T.min(kg, {K - 1})" if conds[0] else "kg"
                    px = f"T.min(pg, {extent - 1})" if conds[1] else "pg"
                    load = f"Xf[{b}, {kx}, {px}]" if conv else f"X[{px}, {kx}]"
                    cond = " and ".join(c for c in conds if c)
                    if cond:
                        load = f"T.if_then_else({cond}, {load}, T.float32(0))"
                    src(f"S[{row} * {TMP} + {col}] = {load}")
                src('T.tvm_storage_sync("shared")')
                # ---- entries of this panel
                with src.block(f"for q in T.unroll({RB}):"):
                    src.let("vb", f"bx * {NW * RB} + ty * {RB} + q")
                    if S > 1:
                        src.let("ib", f"vb // {S}")
                        src.let("r0", f"vb % {S} * {R}")
                    else:
                        src.let("ib", "vb")
                    with src.block(guard(f"vb < {NBV}" if GN * NW * RB != NBV else None)):
                        src.let("s", pat.start("ib", "p"))
                        with src.block(f"for e in T.serial({pat.count('ib', 'p')}):"):
                            src.let("j", "s + e")
                            src.let("cl", pat.col("j", "e", "ib", "p"))
                            with src.block(f"for cc in T.unroll({C}):"):
                                with src.block(f"for i in T.unroll({MR}):"):
                                    src(f"xv[i] = S[(cl + cc) * {TMP} + tx + i * {WARP}]")
                                with src.block(f"for rr in T.unroll({R}):"):
                                    src.let("wv", pat.w("j", "r0 + rr" if S > 1 else "rr", "cc"))
                                    with src.block(f"for i in T.unroll({MR}):"):
                                        a = f"acc[(q * {R} + rr) * {MR} + i]"
                                        src(f"{a} = {a} + wv * xv[i]")
                src('T.tvm_storage_sync("shared")')
            # ---- write-back
            if conv:
                with src.block(f"for q in T.unroll({RB * R}):"), src.block(f"for i in T.unroll({MR}):"):
                    src.let("n", f"bx * {TN} + ty * {RB * R} + q")
                    src.let("pg", f"by * {TM} + tx + i * {WARP}")
                    conds = [f"n < {N}" if GN * TN != N else None, f"pg < {extent}" if GM * TM != extent else None]
                    with src.block(guard(" and ".join(c for c in conds if c))):
                        y = epilogue(src, f"acc[q * {MR} + i]", "n" if bias else None, activation)
                        src(f"Yf[{b}, n, pg] = {y}")
            else:
                with src.block(f"for q in T.unroll({RB * R}):"), src.block(f"for i in T.unroll({MR}):"):
                    src(f"S[(ty * {RB * R} + q) * {TMP} + tx + i * {WARP}] = acc[q * {MR} + i]")
                src('T.tvm_storage_sync("shared")')
                with src.block(f"for it in T.serial({TN * TM // NT}):"):
                    src.let("f", f"(it * {NW} + ty) * {WARP} + tx")
                    src.let("jn", f"f % {TN}")
                    src.let("mm", f"f // {TN}")
                    src.let("n", f"bx * {TN} + jn")
                    src.let("mg", f"by * {TM} + mm")
                    conds = [f"n < {N}" if GN * TN != N else None, f"mg < {m}" if GM * TM != m else None]
                    with src.block(guard(" and ".join(c for c in conds if c))):
                        y = epilogue(src, f"S[jn * {TMP} + mm]", "n" if bias else None, activation)
                        src(f"Y[mg, n] = {y}")
    return dict(kernel="panel", mr=MR, rb=RB, nw=NW, tk=TK, rs=R, tile=(TN, TM), grid=(GN, GM, batch),
                smem_bytes=4 * smem)
