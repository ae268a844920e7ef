"""Row-gather kernel for small batches (M = 1 .. a few): Y[m, n] = sum_j vals[j] * X[m, k(j)].

Each output row's nonzeros are padded to whole vectors of ``lanes`` entries (value 0, a valid index), so the inner
loop is one vector load of values, one vector of indices and one gather of X per row of X. The gather is either
the hardware instruction (AVX-512 / AVX2, through ``T.call_llvm_pure_intrin``) or per-lane loads that every LLVM
backend vectorizes around (NEON, wasm SIMD128). Row sums are reduced with a log2(lanes) tree; the epilogue
(bias + activation) runs vectorized over blocks of ``lanes`` consecutive rows.
"""

from __future__ import annotations

from typing import Callable

from ._common import Src, func_header, parallel_or_serial, vec_loops
from .activations import emit_activation

_GATHER = {
    16: ("float32x16", "llvm.x86.avx512.mask.gather.dps.512", "T.Broadcast(T.bool(True), 16)", "T.int32(4)"),
    8: ("float32x8", "llvm.x86.avx2.gather.d.ps.256", "T.Broadcast(T.float32(-1.0), 8)", "T.int8(4)"),
}


def gather_width(gather: str, lanes: int) -> int:
    if gather == "avx512" and lanes % 16 == 0:
        return 16
    if gather in ("avx512", "avx2") and lanes % 8 == 0:
        return 8
    return 0


def emit_gather_rows(
    name: str,
    *,
    m: int,
    k: int,
    n: int,
    lanes: int,
    threads: int,
    gather: str,
    arrays: list[tuple[str, tuple[int, ...], str]],
    row_groups: Callable[[str], tuple[str, str]],
    index_expr: Callable[[str, str, str], str],
    chunked: bool,
    n_chunks: int,
    bias: bool,
    activation: str,
    vector_of: Callable[[int, str, str], str] | None = None,
    prologue: Callable[[Src], None] | None = None,
) -> Src:
    """TVMScript source of a row-gather kernel.

    arrays: constant buffers after X (values ``vals`` [groups*lanes] first); row_groups(row) -> (first, end)
    group expressions; index_expr(row, group, lane) -> int32 column expression of one entry; chunked: parallel
    over ``cptr`` chunks of row blocks (else over row blocks directly). vector_of(m, group, row): an expression
    giving the ``lanes`` X values of one group directly (e.g. an in-register permute), replacing the gather;
    prologue(src): emitted before the main loop (workspaces).
    """
    L, rb = lanes, lanes
    src = Src()
    params = [("X", (m, k), "float32")] + arrays + ([("bias", (n,), "float32")] if bias else [])
    params.append(("Y", (m, n), "float32"))
    func_header(src, name, params)
    if prologue is not None:
        prologue(src)
    gw = 0 if vector_of is not None else gather_width(gather, L)
    n_full = n // rb

    def row_block(n0: str, rows: int) -> None:
        sfx = src.var("_")
        tmp, acc, kv, row, y = (f"{p}{sfx}" for p in ("tmp", "acc", "kv", "row", "y"))
        src(f'{tmp} = T.alloc_buffer(({m * rows},), "float32", scope="local")')
        with src.block(f"for r in T.serial({rows}):"):
            src.let(row, f"{n0} + r")
            src(f'{acc} = T.alloc_buffer(({m * L},), "float32", scope="local")')
            if gw:
                src(f'{kv} = T.alloc_buffer(({L},), "int32", scope="local")')
            with vec_loops(src, m * L, L, "v") as v:
                src(f"{acc}[{v}] = T.float32(0)")
            first, end = row_groups(row)
            f64, e64 = src.var("f"), src.var("e")
            src.let(f64, f'T.Cast("int64", {first})')
            src.let(e64, f'T.Cast("int64", {end})')
            with src.block(f"for g in T.serial({f64}, {e64}):"):
                if gw:
                    with src.block(f"for v in T.vectorized({L}):"):
                        src(f"{kv}[v] = {index_expr(row, 'g', 'v')}")
                for mi in range(m):
                    if vector_of is not None:
                        a = f"{acc}[T.Ramp({mi * L}, 1, {L})]"
                        src(f"{a} = {a} + vals[T.Ramp(g * {L}, 1, {L})] * {vector_of(mi, 'g', row)}")
                    elif gw:
                        dt, intrin, mask, scale = _GATHER[gw]
                        for h in range(L // gw):
                            o = h * gw
                            gathered = (f'T.call_llvm_pure_intrin("{dt}", "{intrin}", T.Broadcast(T.float32(0), {gw}), '
                                        f'T.address_of(X[{mi}, 0]), {kv}[T.Ramp({o}, 1, {gw})], {mask}, {scale})')
                            src(f"{acc}[T.Ramp({mi * L + o}, 1, {gw})] = {acc}[T.Ramp({mi * L + o}, 1, {gw})] + "
                                f"vals[T.Ramp(g * {L} + {o}, 1, {gw})] * {gathered}")
                    else:
                        # per-lane scalar loads; LLVM packs them into vectors (no gather with +prefer-no-gather)
                        with src.block(f"for v in T.unroll({L}):"):
                            src(f"{acc}[{mi * L} + v] = {acc}[{mi * L} + v] + vals[g * {L} + v] * "
                                f"X[{mi}, {index_expr(row, 'g', 'v')}]")
            # horizontal sums, a log2 tree of vector adds
            w = L
            while w > 1 and w % 2 == 0:
                w //= 2
                for mi in range(m):
                    with src.block(f"for v in T.vectorized({w}):"):
                        src(f"{acc}[{mi * L} + v] = {acc}[{mi * L} + v] + {acc}[{mi * L + w} + v]")
            for mi in range(m):
                total = " + ".join(f"{acc}[{mi * L + i}]" for i in range(w))
                src(f"{tmp}[{mi * rows} + r] = {total}")
        for mi in range(m):
            with src.block(f"for v in T.vectorized({rows}):" if rows > 1 else "for v in T.serial(1):"):
                val = f"{tmp}[{mi * rows} + v]" + (f" + bias[{n0} + v]" if bias else "")
                src.let(y, f"{val}")
                src(f"Y[{mi}, {n0} + v] = {emit_activation(src, y, activation)}")

    if n_full:
        if chunked:
            with src.block(f"for c in {parallel_or_serial(threads, n_chunks)}({n_chunks}):"):
                with src.block("for b in T.serial(cptr[c], cptr[c + 1]):"):
                    row_block(f"b * {rb}", rb)
        else:
            with src.block(f"for b in {parallel_or_serial(threads, n_full)}({n_full}):"):
                row_block(f"b * {rb}", rb)
    if n % rb:
        row_block(str(n_full * rb), n % rb)
    return src
