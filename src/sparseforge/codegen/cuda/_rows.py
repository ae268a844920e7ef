"""Small-M CUDA kernel: one lane group (4..32 lanes of a warp) per block row of W, reduced with warp shuffles.

``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias)``, float32, X row-major, M small (default <= 16). The G lanes of a
group stride over the block row's (block, column) entries, so the packed values and indices are read coalesced
(each lane reads one block column of ``r`` contiguous values); X is gathered through L1 (an X row is reused by
every block row; a block handles too few rows for a shared-memory copy of X to pay for its loads). Each lane
keeps ``MC x r`` partial sums (M in chunks of MC), reduced with ``__shfl_xor_sync`` inside the group; lane q of
the group writes output q (consecutive rows of a block row: coalesced), bias and activation fused. Tall blocks
are split: a group may own ``rs`` of the ``r`` rows of a block row (fewer accumulators, more groups in flight).

Exact up to summation order. Any M, N, K (no divisibility needed); empty rows give act(bias).
"""

from __future__ import annotations

from ._emit import FULL_MASK, WARP, Src, epilogue, func_header, guard

SMS = 132  # streaming multiprocessors assumed when sizing grids (H100 SXM; A100 has 108)


def pow2_floor(x: float) -> int:
    return 1 << max(0, int(x).bit_length() - 1) if x >= 1 else 1


def choose_group(entries: float) -> int:
    """Lanes per block row: about two entries per lane, 4..32."""
    return min(WARP, max(4, pow2_floor(entries / 2)))


def divisors_desc(r: int) -> list[int]:
    return [d for d in range(r, 0, -1) if r % d == 0]


def choose_split(r: int, m: int, nb: int, group: int) -> int:
    """Rows of a block per lane group: <= 32 accumulators for min(m, 32) rows of X, then split further while
    fewer than two 256-thread blocks per SM would be busy: down to 4 rows (keeps the X reuse of a block), below
    that only while there would be fewer 128-thread blocks than SMs."""
    divs = divisors_desc(r)
    rs = next((d for d in divs if d * min(m, WARP) <= WARP), 1)
    for d in divs:
        threads = nb * (r // rs) * group
        if d < rs and threads < 2 * SMS * 256 and (d >= min(4, r) or threads < SMS * 128):
            rs = d
    return rs


def emit_rows(src: Src, name: str, pat, *, m: int, bias: bool, activation: str, group: int | None = None,
              threads: int | None = None, rs: int | None = None) -> dict:
    R, C, NB, N, K = pat.r, pat.c, pat.nb, pat.n, pat.k
    G = int(group or choose_group(pat.entries))
    if G not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"lane group must be a power of two <= 32, got {G}")
    RS = int(rs or choose_split(R, m, NB, G))
    if R % RS:
        raise ValueError(f"rs={RS} must divide the block rows {R}")
    S = R // RS  # groups per block row
    VB = NB * S  # work items: (block row, slice of RS rows)
    MC = max(1, min(m, WARP // RS)) if RS <= WARP else 1  # rows of X per pass: <= 32 accumulators
    MCH = -(-m // MC)
    ACC = MC * RS
    if threads is None:
        threads = 256 if -(-VB * G // 256) >= 2 * SMS else 128
    if threads % WARP or threads % G or threads > 1024:
        raise ValueError(f"threads must be a multiple of 32 (and of the group) <= 1024, got {threads}")
    GPB = threads // G
    GRID = max(1, -(-VB // GPB))

    params = [("X", (m, K), "float32")] + list(pat.arrays)
    if bias:
        params.append(("bias", (N,), "float32"))
    params.append(("Y", (m, N), "float32"))
    func_header(src, name, params)
    with src.block(f'for bx in T.thread_binding({GRID}, thread="blockIdx.x"):'):
        with src.block(f'for tx in T.thread_binding({threads}, thread="threadIdx.x"):'):
            src(f'acc = T.alloc_buffer(({ACC},), "float32", scope="local")')
            src(f'xv = T.alloc_buffer(({MC},), "float32", scope="local")')
            src.let("vb", f"bx * {GPB} + tx // {G}")
            if S > 1:
                src.let("ib", f"vb // {S}")
                src.let("r0", f"vb % {S} * {RS}")
            else:
                src.let("ib", "vb")
            src.let("lane", f"tx % {G}")
            row_ok = f"vb < {VB}" if GRID * GPB > VB else None
            with src.block(f"for mc in T.serial({MCH}):" if MCH > 1 else None):
                m0 = "mc * " + str(MC) if MCH > 1 else "0"
                with src.block(f"for q in T.unroll({ACC}):"):
                    src("acc[q] = T.float32(0)")
                with src.block(guard(row_ok)):
                    src.let("s", pat.start("ib"))
                    src.let("cnt", pat.count("ib"))
                    with src.block(f"for t in T.serial((cnt * {C} - lane + {G - 1}) // {G}):"):
                        src.let("e", f"lane + t * {G}")
                        if C > 1:
                            src.let("eb", f"e // {C}")
                            src.let("cc", f"e % {C}")
                            eb, cc = "eb", "cc"
                        else:
                            eb, cc = "e", "0"
                        src.let("j", f"s + {eb}")
                        src.let("col", pat.col("j", eb, "ib") + (f" + {cc}" if C > 1 else ""))
                        with src.block(f"for mi in T.unroll({MC}):"):
                            mrow = f"{m0} + mi" if MCH > 1 else "mi"
                            if MCH * MC != m:
                                mrow = f"T.min({mrow}, {m - 1})"
                            xval = f"X[{mrow}, col]"
                            if -(-K // C) * C != K:  # padded last block column: never read past K
                                xval = f"T.if_then_else(col < {K}, X[{mrow}, T.min(col, {K - 1})], T.float32(0))"
                            src(f"xv[mi] = {xval}")
                        with src.block(f"for rr in T.unroll({RS}):"):
                            src.let("wv", pat.w("j", "r0 + rr" if S > 1 else "rr", cc))
                            with src.block(f"for mi in T.unroll({MC}):"):
                                src(f"acc[mi * {RS} + rr] = acc[mi * {RS} + rr] + wv * xv[mi]")
                if G > 1:  # butterfly over the group: every lane ends with every sum (all lanes take part)
                    with src.block(f"for q in T.unroll({ACC}):"):
                        s = G // 2
                        while s >= 1:
                            src(f"acc[q] = acc[q] + T.tvm_warp_shuffle_xor({FULL_MASK}, acc[q], {s}, {G}, {WARP})")
                            s //= 2
                with src.block(f"for q in T.unroll({ACC}):"):
                    src.let("n", f"vb * {RS} + q % {RS}")  # = ib * R + r0 + q % RS
                    src.let("mm", f"{m0} + q // {RS}" if MCH > 1 else f"q // {RS}")
                    conds = [f"lane == q % {G}" if G > 1 else None, row_ok,
                             f"n < {N}" if NB * R != N else None, f"mm < {m}" if MCH * MC != m else None]
                    with src.block(guard(" and ".join(c for c in conds if c))):
                        y = epilogue(src, "acc[q]", "n" if bias else None, activation)
                        src(f"Y[mm, n] = {y}")
    return dict(kernel="rows", group=G, threads=threads, grid=GRID, m_chunk=MC, rows_per_group=RS)
