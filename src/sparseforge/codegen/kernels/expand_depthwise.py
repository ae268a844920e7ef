"""Fused inverted-residual pair: a 1x1 expansion (sparse or dense) and the depthwise convolution that consumes it.

``E = act1(W1 X + b1)`` (1x1, ``Cin -> C``) then ``Y = act2(depthwise_{KH x KW, stride, pads}(E) + b2)``, both on
the dense pipeline's NCHW{L}c activations: ``X5[B, ceil(Cin/L), H, W, L]`` in, ``Y5[B, ceil(C/L), OH, OW, L]``
out. The expanded tensor ``E`` (the largest one of a MobileNet / EfficientNet block, written and read back once
when the two layers run apart) never leaves the cache: each task keeps a ring of ``KH`` expanded rows
``ring[KH, ceil(C/L), W + pad_left + pad_right, L]`` (zero columns for the horizontal padding) and sweeps its
output rows in order; before output row ``oh`` it expands the input rows ``oh * sh - pad_top + kh`` it does not
hold yet (``sh`` new rows per output row, all ``KH`` at the start of a task's rows; rows outside the image are
zero rows), then runs the depthwise taps out of the ring.

The expansion of one row is the panel kernel of :mod:`.conv1x1_nchwc` (tiles of ``v * L`` positions transposed
into ``Xt[Cin, T]``, one scalar broadcast and ``v`` FMAs per weight entry, transposed back into the ring). The
weight is CSR over its nonzeros, or BSR ``r x c`` (a dense expansion is a BSR with every block present: ``r`` rows
share each ``Xt`` load). The depthwise part accumulates ``MR`` output columns x one vector of ``L`` channels in
registers, ``KH * KW`` taps unrolled.

Tasks: (batch, block of output rows) items, one contiguous range per thread; a task recomputes at most
``KH - sh`` expanded rows at the start of each item. Exact up to summation order (float32); input padding lanes
are never read into real outputs, output padding lanes hold ``act2(0)``.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._common import (KernelTarget, SparseKernel, Src, apply_activation_np, check_bias_activation, conv_operand,
                      dense_of, func_header, parallel_or_serial, parse, resolve_target, unique_name)
from ._panel import FMA_CHAINS, L1_BUDGET, Plan, _emit_block_row, _sets, panel_rows
from .activations import emit_activation
from ._transpose import emit_transpose
from .conv1x1_nchwc import MAX_VECTORS, from_nchwc, to_nchwc

#: Output rows per (batch, row block) item at least (a task recomputes up to KH - stride expanded rows per item).
MIN_ITEM_ROWS = 4
#: Output columns per depthwise register tile at most.
MAX_DW_COLUMNS = 4


def dw_geometry(height: int, width: int, kernel: tuple[int, int], strides: tuple[int, int],
                pads: tuple[int, int, int, int]) -> tuple[int, int]:
    """``(OH, OW)`` of the depthwise convolution (pads = top, left, bottom, right)."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, pads
    return (height + pt + pb - kh) // sh + 1, (width + pl + pr - kw) // sw + 1


def row_plan(width: int, cin_rows: int, r: int, lanes: int, tgt: KernelTarget, *, max_vectors: int | None = None,
             l1_bytes: int = L1_BUDGET, chains: int = FMA_CHAINS) -> Plan:
    """Tile of one expanded row: ``v`` vectors of ``lanes`` positions (at most MAX_VECTORS, within the accumulator
    registers and with ``Xt`` in the L1 budget; tiles of a row balanced), a single K panel."""
    groups = -(-width // lanes)
    budget = max(tgt.registers - 4, 4)
    vmax = max(1, min(max_vectors or MAX_VECTORS, budget // max(r, 1)))
    while vmax > 1 and cin_rows * vmax * lanes * 4 > l1_bytes:
        vmax //= 2
    tiles = -(-groups // vmax)
    v = -(-groups // tiles)
    return Plan(vw=lanes, v=v, pt=v * lanes, kc=cin_rows, panels=1, chains=chains)


def item_rows(out_h: int, batch: int, threads: int) -> int:
    """Row blocks per image: enough (batch, row block) items for every thread, each of MIN_ITEM_ROWS rows at least."""
    if threads <= 1 or batch >= threads:
        return 1
    return max(1, min(-(-threads // batch), out_h // MIN_ITEM_ROWS))


def emit_expand_depthwise(name: str, *, batch: int, spatial: tuple[int, int], cin: int, rows, plan: Plan,
                          lanes: int, tgt: KernelTarget, bias: bool, act1: str, kernel: tuple[int, int],
                          strides: tuple[int, int], pads: tuple[int, int, int, int], dw_bias: bool, act2: str,
                          mr: int) -> Src:
    """TVMScript source of the fused expansion + depthwise kernel (see the module docstring)."""
    L, v, pt = lanes, plan.v, plan.pt
    h, w = spatial
    hw = h * w
    cout, r = rows.n, rows.r
    kh_, kw_ = kernel
    sh, sw = strides
    ptop, pleft, _, pright = pads
    oh_, ow_ = dw_geometry(h, w, kernel, strides, pads)
    cbi, cbo = -(-cin // L), -(-cout // L)
    wpad = w + pleft + pright
    kx_rows = max(cbi * L, rows.kp)
    nfo, rem = cout // L, cout % L
    bpo = L // r
    u = _sets(r, v, tgt, plan.chains)
    ntw = -(-w // pt)  # tiles per row
    partial = ntw * pt != w
    nblk = item_rows(oh_, batch, tgt.threads)
    items = batch * nblk
    ntasks = min(tgt.threads, items) if tgt.threads > 1 else 1
    new_rows = min(sh, kh_)  # expanded rows a later output row adds

    src = Src()
    params = [("X5", (batch, cbi, h, w, L), "float32")] + list(rows.arrays)
    if bias:
        params.append(("bias", (cout,), "float32"))
    params.append(("dw_w", (cbo * kh_ * kw_ * L,), "float32"))
    if dw_bias:
        params.append(("dw_b", (cbo * L,), "float32"))
    params.append(("Y5", (batch, cbo, oh_, ow_, L), "float32"))
    func_header(src, name, params)
    src(f'X = T.decl_buffer(({batch * cbi * hw * L},), "float32", data=X5.data)')
    src(f'Y = T.decl_buffer(({batch * cbo * oh_ * ow_ * L},), "float32", data=Y5.data)')
    xt_size, yt_size = kx_rows * pt, L * pt
    slot_size = cbo * wpad * L
    ring_size = kh_ * slot_size
    # scratch of all tasks allocated once, outside the parallel loop, indexed with per-task offsets (see
    # conv1x1_nchwc: per-task buffers come from the workers' pools, and merged views confuse StorageRewrite)
    src(f'Xt = T.alloc_buffer(({ntasks * xt_size},), "float32")')
    src(f'Yt = T.alloc_buffer(({ntasks * yt_size},), "float32")')
    src(f'R = T.alloc_buffer(({ntasks * ring_size},), "float32")')
    xo = "xo + " if ntasks > 1 else ""
    yo = "yo + " if ntasks > 1 else ""
    ro = "ro + " if ntasks > 1 else ""
    with contextlib.ExitStack() as task_scope:
        task_scope.enter_context(src.block(f"for task in {parallel_or_serial(tgt.threads, ntasks)}({ntasks}):"))
        if ntasks > 1:
            src.let("xo", f"task * {xt_size}")
            src.let("yo", f"task * {yt_size}")
            src.let("ro", f"task * {ring_size}")
        if rows.kp > cin:  # Xt rows past Cin that BSR block columns read: zeros (input padding lanes not copied)
            with src.block(f"for q in T.serial({(rows.kp - cin) * pt // L}):"):
                with src.block(f"for qi in T.vectorized({L}):"):
                    src(f"Xt[{xo}{cin * pt} + q * {L} + qi] = T.float32(0)")
        if pleft or pright:  # the ring's padding columns: zero once, never written again
            with src.block(f"for sr in T.serial({kh_ * cbo}):"):
                for c0, n in ((0, pleft), (pleft + w, pright)):
                    if n:
                        with src.block(f"for q in T.serial({n}):"):
                            with src.block(f"for qi in T.vectorized({L}):"):
                                src(f"R[{ro}(sr * {wpad} + {c0} + q) * {L} + qi] = T.float32(0)")
        task_scope.enter_context(src.block(
            f"for item in T.serial(task * {items} // {ntasks}, (task + 1) * {items} // {ntasks}):"))
        src.let("b", f"item // {nblk}")
        src.let("o0", f"item % {nblk} * {oh_} // {nblk}")
        # (a loop over [o0, o1) with a let-bound start lost its iterations in TVM 0.27's lowering: count from 0)
        task_scope.enter_context(src.block(f"for ohl in T.serial((item % {nblk} + 1) * {oh_} // {nblk} - o0):"))
        src.let("oh", "o0 + ohl")
        # ---------------------------------------------------------------- expand the rows this output row adds
        src.let("top", f"oh * {sh} - {ptop}")
        src.let("lo", f"T.if_then_else(ohl == 0, top, top + {kh_ - new_rows})")
        with src.block(f"for ih in T.serial(lo, top + {kh_}):"):
            src.let("slot", f"(ih + {kh_}) % {kh_}")
            with src.block(f"if ih < 0 or ih >= {h}:"):
                with src.block(f"for q in T.serial({cbo}):"):
                    with src.block(f"for qw in T.serial({w}):"):
                        with src.block(f"for qi in T.vectorized({L}):"):
                            src(f"R[{ro}((slot * {cbo} + q) * {wpad} + {pleft} + qw) * {L} + qi] = T.float32(0)")
            with src.block("else:"):
                _emit_expand_row(src, rows=rows, plan=plan, lanes=L, u=u, cin=cin, cbi=cbi, cbo=cbo, hw=hw, w=w,
                                 ntw=ntw, partial=partial, nfo=nfo, rem=rem, bpo=bpo, bias=bias, act1=act1,
                                 wpad=wpad, pleft=pleft, xo=xo, yo=yo, ro=ro)
        # ---------------------------------------------------------------- depthwise output row oh
        bases = []
        for kh in range(kh_):
            bases.append(src.let(f"rb{kh}", f"{ro}(top + {kh + kh_}) % {kh_} * {slot_size}"))
        _emit_depthwise_row(src, bases=bases, kernel=kernel, sw=sw, cbo=cbo, wpad=wpad, out_w=ow_, out_h=oh_,
                            lanes=L, mr=mr, dw_bias=dw_bias, act2=act2)
    return src


def _emit_expand_row(src: Src, *, rows, plan: Plan, lanes: int, u: int, cin: int, cbi: int, cbo: int, hw: int,
                     w: int, ntw: int, partial: bool, nfo: int, rem: int, bpo: int, bias: bool, act1: str, wpad: int,
                     pleft: int, xo: str, yo: str, ro: str) -> None:
    """Expand input row ``ih`` of image ``b`` into ring slot ``slot`` (positions [pleft, pleft + w))."""
    L, v, pt, r = lanes, plan.v, plan.pt, rows.r
    cout = rows.n
    with src.block(f"for tw in T.serial({ntw}):" if ntw > 1 else "for tw in T.serial(1):"):
        src.let("w0", f"tw * {pt}")

        def pos(g: str, j: int) -> str:
            p = f"w0 + {g} * {L} + {j}"
            return f"T.min({p}, {w - 1})" if partial else p

        def transpose_in(cb: str, valid: int) -> None:
            with src.block(f"for g in T.serial({v}):"):
                emit_transpose(
                    src, L, lambda j: f"X[T.Ramp(((b * {cbi} + {cb}) * {hw} + ih * {w} + {pos('g', j)}) * {L}, 1, {L})]",
                    lambda ln, e: src(f"Xt[T.Ramp({xo}({cb} * {L} + {ln}) * {pt} + g * {L}, 1, {L})] = {e}")
                    if ln < valid else None)

        if cin // L:
            with src.block(f"for cb in T.serial({cin // L}):"):
                transpose_in("cb", L)
        if cin % L:
            transpose_in(str(cin // L), cin % L)

        def transpose_out(ob: str, valid: int) -> None:
            with src.block(f"for g in T.serial({v}):"):
                outs = []
                emit_transpose(src, L, lambda ln: f"Yt[T.Ramp({yo}{ln} * {pt} + g * {L}, 1, {L})]"
                               if ln < valid else None, lambda j, e: outs.append((j, e)))

                def stores(checked: bool) -> None:
                    for j, e in outs:
                        line = (f"R[T.Ramp({ro}((slot * {cbo} + {ob}) * {wpad} + {pleft} + w0 + g * {L} + {j}) * {L}"
                                f", 1, {L})] = {e}")
                        if checked:
                            with src.block(f"if w0 + g * {L} + {j} < {w}:"):
                                src(line)
                        else:
                            src(line)

                if partial:
                    with src.block(f"if w0 + g * {L} + {L} <= {w}:"):
                        stores(False)
                    with src.block("else:"):
                        stores(True)
                else:
                    stores(False)

        def block_row(ob: str, ibl: str, rows_valid: int) -> None:
            ib = src.let(src.var("ib"), f"{ob} * {bpo} + {ibl}")

            def local(rr: int) -> str:
                return f"{ibl} * {r} + {rr}" if r > 1 else ibl

            def init(acc, row, off):
                with src.block(f"for vo in T.unroll({v}):"):
                    with src.block(f"for vi in T.vectorized({L}):"):
                        brow = f"T.min({row}, {cout - 1})" if cout % r else row
                        src(f"{acc}[{off} + vo * {L} + vi] = bias[{brow}]")

            def finish(acc, rr):
                off = rr * pt
                with src.block(f"for vo in T.unroll({v}):"):
                    with src.block(f"for vi in T.vectorized({L}):"):
                        y = src.var("y")
                        src.let(y, f"{acc}[{off} + vo * {L} + vi]")
                        src(f"Yt[{yo}({local(rr)}) * {pt} + vo * {L} + vi] = {emit_activation(src, y, act1)}")

            _emit_block_row(src, rows, ib, "0", pt, L, u, lambda kk, q: f"Xt[{xo}({kk}) * {pt} + {q}]",
                            init if bias else None, finish, rows_valid)

        if nfo:
            with src.block(f"for ob in T.serial({nfo}):"):
                with src.block(f"for ibl in T.serial({bpo}):"):
                    block_row("ob", "ibl", r)
                transpose_out("ob", L)
        if rem:
            ob = str(nfo)
            if rem // r:
                with src.block(f"for ibl in T.serial({rem // r}):"):
                    block_row(ob, "ibl", r)
            if rem % r:
                block_row(ob, str(rem // r), rem % r)
            transpose_out(ob, rem)


def _emit_depthwise_row(src: Src, *, bases: list[str], kernel: tuple[int, int], sw: int, cbo: int, wpad: int,
                        out_w: int, out_h: int, lanes: int, mr: int, dw_bias: bool, act2: str) -> None:
    """Output row ``oh`` of image ``b`` from the ring rows at ``bases[kh]``: MR columns x L channels per tile."""
    L = lanes
    kh_, kw_ = kernel
    tiles = -(-out_w // mr)
    partial = tiles * mr != out_w
    with src.block(f"for ob in T.serial({cbo}):"):
        with src.block(f"for ot in T.serial({tiles}):"):
            acc = src.var("dacc")
            src(f'{acc} = T.alloc_buffer(({mr * L},), "float32", scope="local")')
            with src.block(f"for m in T.unroll({mr}):"):
                with src.block(f"for vi in T.vectorized({L}):"):
                    src(f"{acc}[m * {L} + vi] = " + (f"dw_b[ob * {L} + vi]" if dw_bias else "T.float32(0)"))
            for kh in range(kh_):
                for kw in range(kw_):
                    wv = src.let(src.var("wt"), f"dw_w[T.Ramp(((ob * {kh_} + {kh}) * {kw_} + {kw}) * {L}, 1, {L})]")
                    for m in range(mr):
                        col = f"ot * {mr} + {m}"
                        if partial:
                            col = f"T.min({col}, {out_w - 1})"
                        e = f"R[T.Ramp({bases[kh]} + (ob * {wpad} + ({col}) * {sw} + {kw}) * {L}, 1, {L})]"
                        a = f"{acc}[T.Ramp({m * L}, 1, {L})]"
                        src(f"{a} = {a} + {e} * {wv}")
            for m in range(mr):
                guard = f"if ot * {mr} + {m} < {out_w}:" if partial and m else None
                with src.block(guard):
                    with src.block(f"for vi in T.vectorized({L}):"):
                        y = src.var("z")
                        src.let(y, f"{acc}[{m * L} + vi]")
                        src(f"Y[((b * {cbo} + ob) * {out_h} + oh) * {out_w * L} + (ot * {mr} + {m}) * {L} + vi] = "
                            f"{emit_activation(src, y, act2)}")


# --------------------------------------------------------------------------------------------------- builder


def _pack_depthwise(weight: np.ndarray, channels: int, lanes: int, name: str) -> np.ndarray:
    """``[C, 1, KH, KW]`` (or ``[C, KH, KW]``) -> flat ``[ceil(C/L), KH, KW, L]`` (zero past C)."""
    wd = np.asarray(weight, np.float32)
    if wd.ndim == 4:
        if wd.shape[1] != 1:
            raise ValueError(f"{name}: depthwise weight must be [C, 1, KH, KW], got {wd.shape}")
        wd = wd[:, 0]
    if wd.ndim != 3 or wd.shape[0] != channels:
        raise ValueError(f"{name}: depthwise weight must have {channels} channels, got shape {wd.shape}")
    cb = -(-channels // lanes)
    padded = np.zeros((cb * lanes,) + wd.shape[1:], np.float32)
    padded[:channels] = wd
    return np.ascontiguousarray(padded.reshape(cb, lanes, *wd.shape[1:]).transpose(0, 2, 3, 1)).reshape(-1)


def expand_depthwise_reference(w1: np.ndarray, b1, act1: str, wd: np.ndarray, bd, act2: str, strides, pads):
    """Float64 NumPy reference on NCHW input: ``act2(depthwise(act1(w1 x + b1)) + bd)`` as float32."""
    w1 = np.asarray(w1, np.float64)
    wd = np.asarray(wd, np.float64).reshape(w1.shape[0], *np.asarray(wd).shape[-2:])
    kh, kw = wd.shape[1:]
    (sh, sw), (pt, pl, pb, pr) = strides, pads

    def reference(x):
        x = np.asarray(x, np.float64)
        e = np.einsum("oc,bchw->bohw", w1, x)
        if b1 is not None:
            e = e + np.asarray(b1, np.float64)[None, :, None, None]
        e = apply_activation_np(e, act1)
        e = np.pad(e, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        oh, ow = (e.shape[2] - kh) // sh + 1, (e.shape[3] - kw) // sw + 1
        y = np.zeros((x.shape[0], w1.shape[0], oh, ow))
        for i in range(kh):
            for j in range(kw):
                y += e[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] * wd[None, :, i, j, None, None]
        if bd is not None:
            y = y + np.asarray(bd, np.float64)[None, :, None, None]
        return apply_activation_np(y, act2).astype(np.float32)

    return reference


def expand_depthwise_nchwc(weight, dw_weight, batch, height, width, *, strides=(1, 1), pads=(0, 0, 0, 0),
                           bias=None, activation="none", dw_bias=None, dw_activation="none", lanes: int | None = None,
                           block: tuple[int, int] | None = None, target=None, name=None, **opts) -> SparseKernel:
    """The fused expansion + depthwise kernel (module docstring), specialized to both weights.

    ``weight``: the 1x1 expansion, an encoded operand of any form (CSR kernel over its nonzeros, or BSR with
    ``block``) or a dense ``[C, Cin]`` / ``[C, Cin, 1, 1]`` matrix; ``dw_weight``: ``[C, 1, KH, KW]``; ``strides``
    ``(sh, sw)`` and ``pads`` ``(top, left, bottom, right)`` of the depthwise convolution (dilation 1). Called as
    ``func(X5, *constants, Y5)``. ``opts``: ``max_vectors``, ``l1_bytes``, ``chains`` of :func:`row_plan`, ``mr``
    (depthwise output columns per tile).
    """
    kname = "expand_depthwise_nchwc"
    weight, bias = conv_operand(weight, bias, activation, kname, block)
    tgt = resolve_target(target)
    L = int(lanes or tgt.lanes)
    if L < 2 or L & (L - 1):
        raise ValueError(f"{kname}: lanes must be a power of two >= 2, got {L}")
    cout, cin = weight.shape
    dw_flat = _pack_depthwise(dw_weight, cout, L, kname)
    kernel = tuple(int(s) for s in np.asarray(dw_weight).shape[-2:])
    strides = tuple(int(s) for s in strides)
    pads = tuple(int(p) for p in pads)
    dw_bias = check_bias_activation(cout, dw_bias, dw_activation, kname)
    if min(strides) < 1 or strides[0] > kernel[0] or min(pads) < 0 or pads[0] >= kernel[0] or pads[2] >= kernel[0]:
        raise ValueError(f"{kname}: unsupported depthwise geometry kernel={kernel} strides={strides} pads={pads}")
    batch, height, width = int(batch), int(height), int(width)
    oh, ow = dw_geometry(height, width, kernel, strides, pads)
    if oh < 1 or ow < 1:
        raise ValueError(f"{kname}: empty output for input {height}x{width}, kernel {kernel}")
    r, c = (1, 1) if block is None else (int(block[0]), int(block[1]))
    if r < 1 or c < 1 or L % r:
        raise ValueError(f"{kname}: block rows must divide lanes ({L}), got block {block}")
    mr = int(opts.pop("mr", 0)) or min(MAX_DW_COLUMNS, ow)
    kp = max(-(-cin // L) * L, -(-cin // c) * c)
    plan = row_plan(width, kp, r, L, tgt, **opts)
    rows, packed, fmt = panel_rows(weight, (r, c), plan)
    name = name or unique_name(kname)
    src = emit_expand_depthwise(name, batch=batch, spatial=(height, width), cin=cin, rows=rows, plan=plan, lanes=L,
                                tgt=tgt, bias=bias is not None, act1=activation, kernel=kernel, strides=strides,
                                pads=pads, dw_bias=dw_bias is not None, act2=dw_activation, mr=mr)
    dw_b = None
    if dw_bias is not None:
        dw_b = np.zeros(-(-cout // L) * L, np.float32)
        dw_b[:cout] = dw_bias
    consts = tuple(packed) + ((bias,) if bias is not None else ()) + (dw_flat,) + ((dw_b,) if dw_b is not None else ())
    cbi, cbo = -(-cin // L), -(-cout // L)
    ref = expand_depthwise_reference(dense_of(weight), bias, activation, dw_weight, dw_bias, dw_activation, strides,
                                     pads)

    pad_lane = float(apply_activation_np(np.zeros(1), dw_activation)[0])

    def reference(x5):
        x5 = np.asarray(x5)
        if x5.shape != (batch, cbi, height, width, L):
            raise ValueError(f"expected input shape {(batch, cbi, height, width, L)}, got {x5.shape}")
        return to_nchwc(ref(from_nchwc(x5, cin)), L, pad_value=pad_lane)

    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(batch, cbo, oh, ow, L),
                        out_dtype="float32", in_shape=(batch, cbi, height, width, L),
                        info=dict(format=fmt, variant="nchwc-expand-depthwise", layout=f"NCHW{L}c", lanes=L,
                                  nnz=weight.nnz, plan=plan, depthwise=dict(kernel=kernel, strides=strides,
                                                                            pads=pads)),
                        _reference=reference)
