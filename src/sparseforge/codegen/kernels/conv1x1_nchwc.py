"""Sparse 1x1 convolution in the dense pipeline's blocked layout NCHW{L}c.

``Y[b, co, p] = act(sum_ci W[co, ci] * X[b, ci, p] + bias[co])`` with the activations stored as
``X5[B, ceil(Cin/L), H, W, L]`` / ``Y5[B, ceil(Cout/L), H, W, L]`` (channel ``k`` at ``[:, k // L, :, :, k % L]``,
exactly the layout of :mod:`..schedules.kernels_conv`). The kernel never reads the input padding lanes (channels
``>= Cin``, which may hold anything) into a real output, and writes 0 into the output padding lanes.

Design (the XNNPACK "Fast Sparse ConvNets" loop, vectorized over spatial positions, on a transposed tile):

* the image is cut into tiles of ``T = v * L`` positions (``v`` <= 8 vectors, fewer when that avoids K panels,
  for small images or to give every thread a tile); ``T.parallel`` over one task per thread, each task sweeping
  a contiguous range of (batch, tile) items with its own scratch buffers;
* the input tile is transposed into the scratch ``Xt[Cin, T]`` (in-register L x L butterfly transposes built
  from two-source ``T.Shuffle``s: ``log2(L)`` shuffles per vector; input padding lanes are never stored);
* each output block of L channels is computed row by row with the panel kernel of :mod:`._panel` (weight
  broadcast, ``v`` vector FMAs per nonzero, accumulators initialised with the bias, fused activation) into
  ``Yt[L, T]`` and transposed back into ``Y5`` (output padding lanes come from zero vectors; positions past
  H*W in the last tile are not stored);
* when ``Xt`` exceeds the L1 budget (``l1_bytes``), the weight is split into K panels (entries stored
  panel-major) and partial sums of all rows go through ``Yt[ceil(Cout/L) * L, T]``.

Measured on Zen 5 (AVX-512, L = 16, 90 % sparse MobileNetV2 layers): 2.1-3.8x faster than the dense NCHWc conv,
and far cheaper than the two layout transforms an NCHW sparse layer needs in an NCHWc network; but the in-kernel
transposes are not free: on 56x56 / 28x28 layers the kernel takes 1.5-1.9x the NCHW kernel's time, on 14x14 and
7x7 layers 0.65-1.0x.

W is stored as CSR (``block=None``, constants ``(vals, idx, ptr[, bias])``) or as BSR with ``block=(r, c)``
(``r`` must divide L; ``c`` any: columns past Cin read zeroed scratch rows), constants
``(data, bidx, ptr[, bias])``. Exact up to summation order; terms with W == 0 are skipped.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np

from ._common import (KernelTarget, SparseKernel, Src, conv1x1_reference, conv_operand, func_header,
                      parallel_or_serial, parse, resolve_target, unique_name)
from .activations import emit_activation
from ._panel import FMA_CHAINS, L1_BUDGET, Plan, _emit_block_row, _sets, panel_rows
from ._transpose import butterfly, emit_transpose  # noqa: F401 - butterfly re-exported

MAX_VECTORS = 8  # vectors of L positions per tile (T = 8 L), fewer for small images / many threads


# --------------------------------------------------------------------------------------------------- layout


def to_nchwc(x: np.ndarray, lanes: int, pad_value: float = 0.0) -> np.ndarray:
    """NCHW -> NCHW{lanes}c (padding channels set to ``pad_value``)."""
    b, ch, h, w = x.shape
    cb = -(-ch // lanes)
    xp = np.full((b, cb * lanes, h, w), pad_value, dtype=x.dtype)
    xp[:, :ch] = x
    return np.ascontiguousarray(xp.reshape(b, cb, lanes, h, w).transpose(0, 1, 3, 4, 2))


def from_nchwc(x5: np.ndarray, channels: int) -> np.ndarray:
    """NCHW{L}c -> NCHW (the first ``channels`` channels)."""
    b, cb, h, w, lanes = x5.shape
    return np.ascontiguousarray(x5.transpose(0, 1, 4, 2, 3).reshape(b, cb * lanes, h, w)[:, :channels])


# --------------------------------------------------------------------------------------------------- plan


def plan_nchwc(hw: int, cin: int, r: int, c: int, lanes: int, tgt: KernelTarget, batch: int, *,
               max_vectors: int | None = None, kc: int | None = None, l1_bytes: int = L1_BUDGET,
               chains: int = FMA_CHAINS) -> Plan:
    """Tile plan: ``v`` vectors of ``lanes`` positions per tile (balanced so that the last tile wastes less than
    one vector, and with at least ``threads`` tasks when possible), K panels of ``kc`` input channels."""
    L = lanes
    groups = -(-hw // L)
    budget = max(tgt.registers - 4, 4)
    vmax = max(1, min(max_vectors or MAX_VECTORS, budget // max(r, 1)))
    kp = -(-cin // c) * c
    if not max_vectors and kp * vmax * L * 4 > l1_bytes >= kp * (vmax // 2) * L * 4:
        vmax //= 2  # a tile whose input fits the L1 budget without K panels (measured better on Zen 5)
    v = min(vmax, groups)
    ntiles = -(-groups // v)
    while tgt.threads > 1 and v > 1 and batch * ntiles < tgt.threads:
        v = -(-v // 2)
        ntiles = -(-groups // v)
    v = -(-groups // ntiles)  # same tile count, least padding
    pt = v * L
    if kc is None:  # K panels of about equal size, each within the L1 budget
        panels = -(-kp * pt * 4 // l1_bytes)
        kc = -(-kp // panels)
    kc = max(c, min(kp, -(-kc // c) * c))
    return Plan(vw=L, v=v, pt=pt, kc=kc, panels=-(-kp // kc), chains=chains)


# --------------------------------------------------------------------------------------------------- emission


def emit_conv_nchwc(name: str, *, batch: int, spatial: tuple[int, int], cin: int, rows, plan: Plan, lanes: int,
                    tgt: KernelTarget, bias: bool, activation: str) -> Src:
    """TVMScript source of the NCHW{L}c sparse 1x1 convolution (see the module docstring)."""
    L, v, pt, P = lanes, plan.v, plan.pt, plan.panels
    h, w = spatial
    hw = h * w
    cout, r, c = rows.n, rows.r, rows.c
    cbi, cbo = -(-cin // L), -(-cout // L)
    groups = -(-hw // L)
    ntiles = -(-groups // v)
    partial_tiles = ntiles * pt != hw
    kx_rows = max(cbi * L, rows.kp)  # BSR block columns may reach past the channel blocks
    nfo, rem = cout // L, cout % L  # full output blocks, rows of the last partial one
    bpo = L // r  # block rows per output block
    shared_yt = P > 1
    u = _sets(r, v, tgt, plan.chains)
    xs = ys = pt  # scratch row strides (floats)

    src = Src()
    params = [("X5", (batch, cbi, h, w, L), "float32")] + list(rows.arrays)
    if bias:
        params.append(("bias", (cout,), "float32"))
    params.append(("Y5", (batch, cbo, h, w, L), "float32"))
    func_header(src, name, params)
    src(f'X = T.decl_buffer(({batch * cbi * hw * L},), "float32", data=X5.data)')
    src(f'Y = T.decl_buffer(({batch * cbo * hw * L},), "float32", data=Y5.data)')

    # one task per thread, each with its scratch, sweeping a contiguous range of (batch, tile) items
    items = batch * ntiles
    ntasks = min(tgt.threads, items) if tgt.threads > 1 else 1
    # scratch of all tasks, allocated once outside the parallel loop (a workspace allocated inside it comes from
    # the worker threads' pools: measured much slower), indexed with a per-task offset (TVM 0.27 trap: per-task
    # T.decl_buffer views of these two buffers made StorageRewrite merge them when they had the same size)
    xt_size, yt_size = kx_rows * xs, (cbo * L if shared_yt else L) * ys
    src(f'Xt = T.alloc_buffer(({ntasks * xt_size},), "float32")')
    src(f'Yt = T.alloc_buffer(({ntasks * yt_size},), "float32")')
    xo = "xo + " if ntasks > 1 else ""
    yo = "yo + " if ntasks > 1 else ""
    with contextlib.ExitStack() as task_scope:
        task_scope.enter_context(src.block(f"for task in {parallel_or_serial(tgt.threads, ntasks)}({ntasks}):"))
        if ntasks > 1:
            src.let("xo", f"task * {xt_size}")
            src.let("yo", f"task * {yt_size}")
        if rows.kp > cin:  # rows past Cin that BSR block columns read: zeros (input padding lanes are not copied)
            with src.block(f"for q in T.serial({(rows.kp - cin) * xs // L}):"):
                with src.block(f"for qi in T.vectorized({L}):"):
                    src(f"Xt[{xo}{cin * xs} + q * {L} + qi] = T.float32(0)")
        task_scope.enter_context(src.block(
            f"for item in T.serial(task * {items} // {ntasks}, (task + 1) * {items} // {ntasks}):"))
        src.let("b", f"item // {ntiles}")
        src.let("t0", f"item % {ntiles} * {pt}")

        # ---- X5[b, :, t0:t0+T, :] -> Xt[ci, 0:T]
        def pos(g: str, j: int) -> str:
            p = f"t0 + {g} * {L} + {j}"
            return f"T.min({p}, {hw - 1})" if partial_tiles else p

        def transpose_in(cb: str, valid: int) -> None:
            with src.block(f"for g in T.serial({v}):"):
                emit_transpose(
                    src, L, lambda j: f"X[T.Ramp(((b * {cbi} + {cb}) * {hw} + {pos('g', j)}) * {L}, 1, {L})]",
                    lambda ln, e: src(f"Xt[T.Ramp({xo}({cb} * {L} + {ln}) * {xs} + g * {L}, 1, {L})] = {e}")
                    if ln < valid else None)

        if cin // L:
            with src.block(f"for cb in T.serial({cin // L}):"):
                transpose_in("cb", L)
        if cin % L:
            transpose_in(str(cin // L), cin % L)

        # ---- sparse rows -> Yt, transposed into Y5[b, ob, t0:t0+T, :]
        def yt_row(ob: str, local: str) -> str:
            return f"({ob} * {L} + {local})" if shared_yt else f"({local})"

        def transpose_out(ob: str, valid: int) -> None:
            with src.block(f"for g in T.serial({v}):"):
                outs = []
                emit_transpose(src, L, lambda ln: f"Yt[T.Ramp({yo}{yt_row(ob, str(ln))} * {ys} + g * {L}, 1, {L})]"
                               if ln < valid else None, lambda j, e: outs.append((j, e)))

                def stores(checked: bool) -> None:
                    for j, e in outs:
                        line = f"Y[T.Ramp(((b * {cbo} + {ob}) * {hw} + t0 + g * {L} + {j}) * {L}, 1, {L})] = {e}"
                        if checked:
                            with src.block(f"if t0 + g * {L} + {j} < {hw}:"):
                                src(line)
                        else:
                            src(line)

                if partial_tiles:  # only the last groups of the last tile are partial
                    with src.block(f"if t0 + g * {L} + {L} <= {hw}:"):
                        stores(False)
                    with src.block("else:"):
                        stores(True)
                else:
                    stores(False)

        def block_row(ob: str, ibl: str, p: str, first: bool, last: bool, rows_valid: int) -> None:
            ib = src.let(src.var("ib"), f"{ob} * {bpo} + {ibl}")

            def local(rr: int) -> str:
                return f"{ibl} * {r} + {rr}" if r > 1 else ibl

            def init(acc, row, off):
                rr = off // pt
                with src.block(f"for vo in T.unroll({v}):"):
                    with src.block(f"for vi in T.vectorized({L}):"):
                        brow = f"T.min({row}, {cout - 1})" if cout % r else row  # a partial block row
                        val = f"bias[{brow}]" if first else f"Yt[{yo}{yt_row(ob, local(rr))} * {ys} + vo * {L} + vi]"
                        src(f"{acc}[{off} + vo * {L} + vi] = {val}")

            def finish(acc, rr):
                off = rr * pt
                with src.block(f"for vo in T.unroll({v}):"):
                    with src.block(f"for vi in T.vectorized({L}):"):
                        a = f"{acc}[{off} + vo * {L} + vi]"
                        if last:
                            y = src.var("y")
                            src.let(y, a)
                            a = emit_activation(src, y, activation)
                        src(f"Yt[{yo}{yt_row(ob, local(rr))} * {ys} + vo * {L} + vi] = {a}")

            _emit_block_row(src, rows, ib, p, pt, L, u, lambda kk, q: f"Xt[{xo}({kk}) * {xs} + {q}]",
                            None if first and not bias else init, finish, rows_valid)

        def sweep(p: str, first: bool, last: bool) -> None:
            if nfo:
                with src.block(f"for ob in T.serial({nfo}):"):
                    with src.block(f"for ibl in T.serial({bpo}):"):
                        block_row("ob", "ibl", p, first, last, r)
                    if last:
                        transpose_out("ob", L)
            if rem:
                ob = str(nfo)
                if rem // r:
                    with src.block(f"for ibl in T.serial({rem // r}):"):
                        block_row(ob, "ibl", p, first, last, r)
                if rem % r:  # the last block row is partial; non-final panels keep all r rows (Yt is padded)
                    block_row(ob, str(rem // r), p, first, last, rem % r if last else r)
                if last:
                    transpose_out(ob, rem)

        if P == 1:
            sweep("0", True, True)
        else:
            sweep("0", True, False)
            if P > 2:
                with src.block(f"for p in T.serial(1, {P - 1}):"):
                    sweep("p", False, False)
            sweep(str(P - 1), False, True)
    return src


# --------------------------------------------------------------------------------------------------- builder


def sparse_conv1x1_nchwc(weight, batch, height, width, *, lanes: int | None = None, bias=None, activation="none",
                         target=None, name=None, block: tuple[int, int] | None = None, **opts) -> SparseKernel:
    """Sparse 1x1 convolution on NCHW{L}c activations, specialized to ``weight``: an encoded operand of any form
    (CSR kernel over its nonzeros, or BSR with ``block``) or a dense [Cout, Cin] (or [Cout, Cin, 1, 1]) matrix.

    Called as ``func(X5, *constants, Y5)`` with ``X5[B, ceil(Cin/L), H, W, L]`` and ``Y5[B, ceil(Cout/L), H, W, L]``;
    ``lanes`` (L) defaults to the target's float32 vector lanes (the dense pipeline's block size). Input padding
    lanes are never read into real outputs; output padding lanes are written as 0. ``opts``: tuning knobs of
    :func:`plan_nchwc` (``max_vectors``, ``kc``, ``l1_bytes``, ``chains``).
    """
    weight, bias = conv_operand(weight, bias, activation, "sparse_conv1x1_nchwc", block)
    tgt = resolve_target(target)
    L = int(lanes or tgt.lanes)
    if L < 2 or L & (L - 1):
        raise ValueError(f"sparse_conv1x1_nchwc: lanes must be a power of two >= 2, got {L}")
    cout, cin = weight.shape
    batch, height, width = int(batch), int(height), int(width)
    hw = height * width
    name = name or unique_name("sparse_conv1x1_nchwc")
    r, c = (1, 1) if block is None else (int(block[0]), int(block[1]))
    if r < 1 or c < 1 or L % r:
        raise ValueError(f"sparse_conv1x1_nchwc: block rows must divide lanes ({L}), got block {block}")
    plan = plan_nchwc(hw, cin, r, c, L, tgt, batch, **opts)
    rows, packed, fmt = panel_rows(weight, (r, c), plan)
    if "chains" not in opts:
        # short rows: extra accumulator sets only add zeroing and a final sum (out-of-order execution overlaps
        # the rows anyway)
        stored = int(rows.arrays[0][1][0]) if weight.nnz else 0
        per_row = stored / max(1, rows.nb * plan.panels)
        plan = replace(plan, chains=min(plan.chains, max(1, int(per_row // 3)) * r * plan.v))
    src = emit_conv_nchwc(name, batch=batch, spatial=(height, width), cin=cin, rows=rows, plan=plan, lanes=L,
                          tgt=tgt, bias=bias is not None, activation=activation)
    consts = tuple(packed) + ((bias,) if bias is not None else ())
    cbi, cbo = -(-cin // L), -(-cout // L)

    def to_nchw(x5):
        x5 = np.asarray(x5)
        if x5.shape != (batch, cbi, height, width, L):
            raise ValueError(f"expected input shape {(batch, cbi, height, width, L)}, got {x5.shape}")
        return from_nchwc(x5, cin)

    reference = conv1x1_reference(weight, bias, activation, batch, height, width,
                                  layout=(to_nchw, lambda y: to_nchwc(y, L)))

    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(batch, cbo, height, width, L),
                        out_dtype="float32", in_shape=(batch, cbi, height, width, L),
                        info=dict(format=fmt, variant="nchwc", layout=f"NCHW{L}c", lanes=L,
                                  nnz=weight.nnz, plan=plan),
                        _reference=reference)
