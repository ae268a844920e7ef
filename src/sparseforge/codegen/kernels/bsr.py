"""Block-sparse (BSR) matmul ``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias)`` with r x c blocks of W.

W is padded logically to whole blocks (zeros; X is copied into a zero-padded workspace when K % c != 0, so no
read goes out of bounds). Stored blocks are those with any nonzero. Constants (float32 values, block-column
indices uint16 when K/c <= 65536 else int32; exact up to summation order):

* small M (``m < min_panel_m``), blocks vectorized inside: over r (``data[nnzb, c, r]``, one broadcast of X per
  block column) when r >= c, else over c (``data[nnzb, r, c]``, contiguous X loads, a tree reduction per row).
* large M (panel kernel of :mod:`._panel`, X transposed, vectorized over M): blocks taller than 4 rows are split
  into 4-row blocks; constants ``(data[nnzb, r, c], bidx, ptr[panels*NB+1], cptr)`` in K-panel-major order.

Small M with at most ``static_max_blocks`` stored blocks: the pattern is baked into the code (unrolled, constant
column and value offsets) and only the values are passed, constants ``(data,)``; otherwise
``(data, bidx, bptr[, cptr])`` (cptr: per-thread chunks of block rows, balanced by block count). On Zen 5 the
unrolled form is slower than index arrays beyond a few dozen blocks (LLVM hoists and spills the X loads shared
by the unrolled rows), hence the small default.
"""

from __future__ import annotations

import contextlib

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.forms import Encoded

from ._common import (KernelTarget, SparseKernel, Src, balanced_chunks, check_operand, func_header,
                      matmul_reference, parallel_or_serial, parse, resolve_target, unique_name, vec_loops)
from .activations import emit_activation
from ._panel import FMA_CHAINS, bsr_panel_rows, emit_panel_matmul, plan_panel

MIN_PANEL_M = 4
STATIC_MAX_BLOCKS = 32  # measured on Zen 5: unrolled patterns lose to index arrays beyond tiny weights
PANEL_MAX_ROWS = 4


def bsr_pack(weight, r: int, c: int):
    """(data [nnzb, r, c], bidx [nnzb], bptr [nb + 1]) of the zero-padded weight (encoded operand of any form, or
    dense); see :func:`sparseforge.ir.forms.bsr.bsr_pack`."""
    enc = weight if isinstance(weight, Encoded) else forms.encode(np.asarray(weight, np.float32), "bsr", block=(r, c))
    return forms.bsr.bsr_pack(enc, r, c)


def _emit_small_m(name: str, *, m: int, k: int, n: int, r: int, c: int, tgt: KernelTarget, arrays, static,
                  bptr: np.ndarray, bias: bool, activation: str, chains: int = FMA_CHAINS):
    """Small-M kernel: blocks vectorized over r (mode "r") or c (mode "c"). Returns (src, cptr or None)."""
    L = tgt.lanes
    mode = "r" if r >= c else "c"
    vec = r if mode == "r" else c
    accsz = r if mode == "r" else r * c  # accumulator floats per row of X per set
    budget = max(tgt.registers - 4, 4)
    per_set = m * max(1, -(-accsz // L))
    u_sets = max(1, min(-(-chains // per_set), budget // per_set, 8))
    ju = max(1, u_sets // c) if mode == "r" else u_sets
    nb, kb = -(-n // r), -(-k // c)
    kpad = kb * c
    group = max(1, L // r)  # block rows per vectorized epilogue
    rows_g = group * r
    n_groups = n // rows_g
    src = Src()
    params = [("X", (m, k), "float32")] + list(arrays)
    cptr = None
    if static is None and tgt.threads > 1 and n_groups > 1:
        work = np.add.reduceat(np.diff(bptr)[:n_groups * group] + 1, np.arange(0, n_groups * group, group)) \
            if n_groups else np.zeros(0)
        cptr = balanced_chunks(work, tgt.threads * 2)
        params.append(("cptr", (len(cptr),), "int32"))
    if bias:
        params.append(("bias", (n,), "float32"))
    params.append(("Y", (m, n), "float32"))
    func_header(src, name, params)
    xb = "X"
    if kpad != k:
        xb = "Xp"
        src(f'Xp = T.alloc_buffer(({m}, {kpad}), "float32")')
        with src.block(f"for mm, kk in T.grid({m}, {kpad}):"):
            src(f"Xp[mm, kk] = T.if_then_else(kk < {k}, X[mm, T.min(kk, {k - 1})], T.float32(0))")

    def terms(acc: str, j: str, col: str, set_of) -> None:
        """acc += block j (at column col) times X; set_of(cc) gives the accumulator set (an expression)."""
        outer, inner = (c, "cc") if mode == "r" else (r, "rr")
        with contextlib.ExitStack() as loops:
            o = inner if outer > 1 else "0"
            if outer > 1:
                loops.enter_context(src.block(f"for {inner} in T.unroll({outer}):"))
            mi = "mi" if m > 1 else "0"
            if m > 1:
                loops.enter_context(src.block(f"for mi in T.unroll({m}):"))
            s_ = set_of(o if mode == "r" else "0")
            with vec_loops(src, vec, L, "v") as v:
                if mode == "r":
                    a = f"{acc}[(({s_}) * {m} + {mi}) * {r} + {v}]"
                    src(f"{a} = {a} + data[{j}, {o}, {v}] * {xb}[{mi}, {col} + {o}]")
                else:
                    a = f"{acc}[((({s_}) * {m} + {mi}) * {r} + {o}) * {c} + {v}]"
                    src(f"{a} = {a} + data[{j}, {o}, {v}] * {xb}[{mi}, {col} + {v}]")

    def fill(acc: str, size: int, expr) -> None:
        with vec_loops(src, size, L, "v") as v:
            src(f"{acc}[{v}] = {expr(v)}")

    def block_row(ib: str, ib_static: int | None, tmp: str, gi: str) -> None:
        acc = src.var("acc")
        size = u_sets * m * accsz
        src(f'{acc} = T.alloc_buffer(({size},), "float32", scope="local")')
        fill(acc, size, lambda v: "T.float32(0)")
        if ib_static is not None:
            for t, (j, colv) in enumerate(static[ib_static]):
                terms(acc, str(j), str(colv),
                      lambda cc, t=t: f"({t * c} + {cc}) % {u_sets}" if mode == "r" else str(t % u_sets))
        else:
            f, e = src.var("f"), src.var("e")
            src.let(f, f"bptr[{ib}]")
            src.let(e, f"bptr[{ib} + 1]")
            if ju > 1:
                with src.block(f"for jj in T.serial(({e} - {f}) // {ju}):"):
                    for q in range(ju):
                        j, col = src.var("j"), src.var("col")
                        src.let(j, f"{f} + jj * {ju} + {q}")
                        src.let(col, f'T.Cast("int32", bidx[{j}]) * {c}')
                        terms(acc, j, col,
                              lambda cc, q=q: f"({q * c} + {cc}) % {u_sets}" if mode == "r" else str(q % u_sets))
                start = f"{f} + ({e} - {f}) // {ju} * {ju}"
            else:
                start = f
            with src.block(f"for j in T.serial({start}, {e}):"):
                col = src.var("col")
                src.let(col, f'T.Cast("int32", bidx[j]) * {c}')
                terms(acc, "j", col, lambda cc: f"{cc} % {u_sets}" if mode == "r" else "0")
        one = m * accsz
        if u_sets > 1:
            fill(acc, one, lambda v: " + ".join(f"{acc}[{s * one} + {v}]" for s in range(u_sets)))
        for mi in range(m):
            if mode == "r":
                with vec_loops(src, r, L, "v") as v:
                    src(f"{tmp}[{mi * rows_g} + {gi} * {r} + {v}] = {acc}[{mi * r} + {v}]")
            else:
                for rr in range(r):
                    base = (mi * r + rr) * c
                    w = c
                    while w > 1 and w % 2 == 0:
                        w //= 2
                        with src.block(f"for v in T.vectorized({w}):"):
                            src(f"{acc}[{base} + v] = {acc}[{base} + v] + {acc}[{base + w} + v]")
                    total = " + ".join(f"{acc}[{base + i}]" for i in range(w))
                    src(f"{tmp}[{mi * rows_g} + {gi} * {r} + {rr}] = {total}")

    def group_code(g0: str, g_static: list[int] | None, nblk: int, rows_valid: int) -> None:
        """nblk block rows starting at block row g0 * group; epilogue over rows_valid rows."""
        tmp = src.var("tmp")
        src(f'{tmp} = T.alloc_buffer(({m * rows_g},), "float32", scope="local")')
        if g_static is not None:
            for gi, ibv in enumerate(g_static):
                block_row(str(ibv), ibv, tmp, str(gi))
        else:
            with src.block(f"for gi in T.serial({nblk}):"):
                ib = src.var("ib")
                src.let(ib, f"{g0} * {group} + gi")
                block_row(ib, None, tmp, "gi")
        row0 = f"{g0} * {rows_g}"
        for mi in range(m):
            with vec_loops(src, rows_valid, L, "v") as v:
                y = src.var("y")
                src.let(y, f"{tmp}[{mi * rows_g} + {v}]" + (f" + bias[{row0} + {v}]" if bias else ""))
                src(f"Y[{mi}, {row0} + {v}] = {emit_activation(src, y, activation)}")

    tail_blocks = nb - n_groups * group
    if static is not None:
        parts = np.array_split(np.arange(n_groups), max(1, min(tgt.threads, n_groups))) if n_groups else []
        if len(parts):
            with src.block(f"for ch in {parallel_or_serial(tgt.threads, len(parts))}({len(parts)}):"):
                for pi, part in enumerate(parts):
                    with src.block(f"if ch == {pi}:"):
                        for g in part:
                            group_code(str(int(g)), [int(g) * group + i for i in range(group)], group, rows_g)
    elif n_groups:
        if cptr is not None:
            with src.block(f"for ch in T.parallel({len(cptr) - 1}):"):
                with src.block("for g in T.serial(cptr[ch], cptr[ch + 1]):"):
                    group_code("g", None, group, rows_g)
        else:
            with src.block(f"for g in T.serial({n_groups}):"):
                group_code("g", None, group, rows_g)
    if tail_blocks:
        ibs = [n_groups * group + i for i in range(tail_blocks)]
        group_code(str(n_groups), ibs if static is not None else None, tail_blocks, n - n_groups * rows_g)
    return src, cptr


def bsr_matmul(weight, m, *, block=None, bias=None, activation="none", target=None, name=None,
               static_max_blocks: int = STATIC_MAX_BLOCKS, min_panel_m: int = MIN_PANEL_M,
               variant: str | None = None, **panel_opts) -> SparseKernel:
    """BSR matmul kernel specialized to ``weight`` (pattern and values) for batch ``m``: an encoded operand
    (:class:`~sparseforge.ir.forms.Encoded`, any form; a BSR one with its own block shape unless ``block`` is
    given) or a dense ``[N, K]`` matrix.

    block: (rows, cols) of a block of W. static_max_blocks: bake the pattern into the code up to this many
    stored blocks (0: never). variant: "small" or "panel" to override the choice by ``min_panel_m``.
    """
    if block is None:
        block = weight.block if isinstance(weight, Encoded) and weight.block else (4, 1)
    r, c = (int(block[0]), int(block[1]))
    if r < 1 or c < 1:
        raise ValueError(f"bsr_matmul: bad block {block}")
    weight, bias = check_operand(weight, bias, activation, "bsr_matmul", "bsr", block=(r, c))
    tgt = resolve_target(target)
    n, k = weight.shape
    name = name or unique_name("bsr_matmul")
    variant = variant or ("panel" if m >= min_panel_m else "small")
    data, bidx, bptr = forms.bsr.bsr_pack(weight, r, c)
    nnzb = int(bptr[-1])
    static = None
    if nnzb <= static_max_blocks and variant == "small":
        static = [[(j, int(bidx[j]) * c) for j in range(bptr[i], bptr[i + 1])] for i in range(len(bptr) - 1)]
    extra = (bias,) if bias is not None else ()
    info = dict(format="bsr", block=(r, c), variant=variant, static=static is not None, nnzb=nnzb,
                nnz=weight.nnz)
    if variant == "small":
        if r < c:
            packed = data  # [nnzb, r, c]
        else:
            packed = np.ascontiguousarray(data.transpose(0, 2, 1))  # [nnzb, c, r]
        arrays = [("data", packed.shape, "float32")]
        if static is None:
            arrays += [("bidx", bidx.shape, str(bidx.dtype)), ("bptr", bptr.shape, "int32")]
        src, cptr = _emit_small_m(name, m=m, k=k, n=n, r=r, c=c, tgt=tgt, arrays=arrays, static=static,
                                  bptr=bptr, bias=bias is not None, activation=activation)
        consts = (packed,) if static is not None else (packed, bidx, bptr)
        consts += ((cptr,) if cptr is not None else ()) + extra
    elif variant == "panel":
        # tall blocks are split into PANEL_MAX_ROWS-row blocks: an XT row loaded for 4 rows of W already
        # halves the loads per FMA, and more rows would leave room for only one vector of M per row
        rp = min(r, PANEL_MAX_ROWS)
        plan = plan_panel(m, -(-k // c) * c, rp, c, tgt, **panel_opts)
        rows, packed = bsr_panel_rows(weight, rp, c, plan)
        src, cptr = emit_panel_matmul(name, m=m, rows=rows, plan=plan, tgt=tgt, bias=bias is not None,
                                      activation=activation)
        consts = packed + ((cptr,) if cptr is not None else ()) + extra
        info.update(static=False, plan=plan)
    else:
        raise ValueError(f"bsr_matmul: unknown variant {variant!r}")
    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(m, n), out_dtype="float32",
                        in_shape=(m, k), info=info, _reference=matmul_reference(weight, bias, activation))
