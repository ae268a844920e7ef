"""N:M compressed matmul ``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias)``: at most n nonzeros in every group of
``group`` consecutive weights along K (1:4, 2:4, 2:8, 4:8, ...).

Constants: ``vals`` float32 [N, G*n] and ``pos`` uint8 [N, G*n] (position inside the group), G = ceil(K/group);
groups with fewer than n nonzeros are padded with (0.0, position 0). K need not be a multiple of ``group`` (the
last group is padded logically; no read beyond K). Exact up to summation order.

* small M: row gather (:mod:`._gather`), column = (j // n) * group + pos[j], rows padded to whole vectors; with
  AVX-512 and n/group = 1/2 (2:4, 4:8) an in-register ``vpermi2ps`` over 32-column windows of X replaces the
  gather (constants ``vals`` and ``pw``: 2-bit positions packed 16 per uint32 for 2:4, else window-relative
  uint8);
* large M: the panel kernel (:mod:`._panel`), X transposed and vectorized over M.
"""

from __future__ import annotations

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.forms import Encoded

from ._common import (SparseKernel, _llvm_features, check_bias_activation, check_common, matmul_reference, parse,
                      resolve_target, unique_name)
from ._gather import emit_gather_rows
from ._panel import PanelRows, emit_panel_matmul, plan_panel

MIN_PANEL_M = 4


def nm_operand(weight: np.ndarray, n: int, group: int) -> Encoded:
    """A dense ``[N, K]`` weight encoded n:group (ValueError naming the first group with more than n nonzeros)."""
    rows, k = weight.shape
    if not 1 <= n <= group <= 256:
        raise ValueError(f"nm_pack: need 1 <= n <= group <= 256, got {n}:{group}")
    g = -(-k // group)
    wp = np.zeros((rows, g * group), np.float32)
    wp[:, :k] = weight
    counts = (wp.reshape(rows, g, group) != 0).sum(2)
    if counts.size and counts.max() > n:
        bad = np.argwhere(counts > n)[0]
        raise ValueError(f"weight is not {n}:{group} sparse: row {bad[0]}, group {bad[1]} has "
                         f"{counts[tuple(bad)]} nonzeros")
    return forms.encode(np.asarray(weight, np.float32), "nm", nm=(n, group))


def nm_pack(weight, n: int, group: int):
    """(vals [N, G*n] float32, pos [N, G*n] uint8) of a dense weight (validated, see :func:`nm_operand`) or of an
    N:M encoded operand; see :func:`sparseforge.ir.forms.nm.groups`."""
    enc = weight if isinstance(weight, Encoded) else nm_operand(weight, n, group)
    return forms.nm.groups(enc)


def _permute_ok(tgt, n: int, group: int) -> bool:
    """The in-register permute variant: AVX-512 with 16 lanes and n/group = 1/2 (a 32-column window of X, two
    registers, holds exactly the 16 entries of one vector)."""
    return tgt.lanes == 16 and 2 * n == group and 32 % group == 0 and _llvm_features(tgt.tvm_target)[0]


def _emit_permute(name, vals, pos, m, k, n, group, tgt, bias, activation):
    """Small-M N:M kernel without gathers: for each 32-column window of X (two zmm registers), one
    ``vpermi2ps`` picks the 16 X values of the window's 16 entries. Positions: 2 bits each, packed 16 to a
    uint32 per vector (group 4), else window-relative uint8."""
    rows_n = vals.shape[0]
    L, W = 16, 32
    gw = W // group  # groups per window
    g = vals.shape[1] // n
    nwin = -(-g // gw)
    kp = nwin * W
    vp = np.zeros((rows_n, nwin * gw * n), np.float32)
    pp = np.zeros((rows_n, nwin * gw * n), np.uint32)
    vp[:, :g * n] = vals
    pp[:, :g * n] = pos
    vflat = vp.reshape(-1)
    packed = group <= 4  # 2-bit positions: one uint32 holds the 16 positions of a window
    if packed:
        shifts = (2 * np.arange(L, dtype=np.uint32))[None, :]
        pflat = np.bitwise_or.reduce(pp.reshape(-1, L) << shifts, axis=1).astype(np.uint32)
    else:  # window-relative uint8 indices
        within = (np.arange(nwin * gw * n) // n % gw) * group
        pflat = (pp + within[None, :]).astype(np.uint8).reshape(-1)
    if not vflat.size:
        vflat, pflat = np.zeros(L, np.float32), np.zeros(1 if packed else L, pflat.dtype)
    xb = "Xp" if kp != k else "X"

    def prologue(src):
        if kp != k:
            src(f'Xp = T.alloc_buffer(({m}, {kp}), "float32")')
            with src.block(f"for mm, kk in T.grid({m}, {kp}):"):
                src(f"Xp[mm, kk] = T.if_then_else(kk < {k}, X[mm, T.min(kk, {k - 1})], T.float32(0))")

    if packed:  # lane v: (v // n) * group + ((word >> 2v) & 3)
        idx = (f'T.Cast("int32x16", (T.Broadcast(pw[{{g}}], 16) >> T.Ramp(T.uint32(0), T.uint32(2), 16)) & '
               f'T.Broadcast(T.uint32(3), 16)) + T.Ramp(0, 1, 16) // {n} * {group}')
    else:
        idx = 'T.Cast("int32x16", pw[T.Ramp({g} * 16, 1, 16)])'

    def vector_of(mi, gv, row):
        w = f"({gv} - {row} * {nwin})"
        return (f'T.call_llvm_pure_intrin("float32x16", "llvm.x86.avx512.vpermi2var.ps.512", '
                f'{xb}[{mi}, T.Ramp({w} * {W}, 1, {L})], {idx.format(g=gv)}, '
                f'{xb}[{mi}, T.Ramp({w} * {W} + {L}, 1, {L})])')

    arrays = [("vals", vflat.shape, "float32"), ("pw", pflat.shape, str(pflat.dtype))]
    src = emit_gather_rows(
        name, m=m, k=k, n=rows_n, lanes=L, threads=tgt.threads, gather="none", arrays=arrays,
        row_groups=lambda row: (f"{row} * {nwin}", f"{row} * {nwin} + {nwin}"), index_expr=None,
        chunked=False, n_chunks=1, bias=bias is not None, activation=activation, vector_of=vector_of,
        prologue=prologue)
    return src, (vflat, pflat) + ((bias,) if bias is not None else ())


def nm_matmul(weight, m, *, n=2, group=4, bias=None, activation="none", target=None, name=None,
              min_panel_m: int = MIN_PANEL_M, variant: str | None = None, **panel_opts) -> SparseKernel:
    """N:M sparse matmul kernel specialized to ``weight`` (n nonzeros per ``group`` along K), batch ``m``: an N:M
    encoded operand (:class:`~sparseforge.ir.forms.Encoded`, its own n:group) or a dense ``[N, K]`` matrix."""
    if isinstance(weight, Encoded):
        if weight.fmt != "nm":
            raise ValueError(f"nm_matmul: needs an N:M operand, got {weight.fmt}")
        n, group = weight.nm
        bias = check_bias_activation(weight.shape[0], bias, activation, "nm_matmul")
    else:
        weight, bias = check_common(weight, bias, activation, "nm_matmul")
        weight = nm_operand(weight, n, group)
    tgt = resolve_target(target)
    rows_n, k = weight.shape
    name = name or unique_name("nm_matmul")
    auto = variant is None
    variant = variant or ("panel" if m >= min_panel_m else "gather")
    if auto and variant == "gather" and _permute_ok(tgt, n, group):
        variant = "permute"
    vals, pos = forms.nm.groups(weight)
    g = vals.shape[1] // n
    J = g * n
    extra = (bias,) if bias is not None else ()
    info = dict(format=f"nm{n}:{group}", variant=variant, nnz=weight.nnz, stored=vals.size)
    plan = None
    if variant == "permute":
        if not _permute_ok(tgt, n, group):
            raise ValueError("nm_matmul: the permute variant needs AVX-512, 16 lanes and n/group = 1/2")
        src, consts = _emit_permute(name, vals, pos, m, k, n, group, tgt, bias, activation)
    elif variant == "gather":
        L = tgt.lanes
        jp = -(-J // L) * L
        gl = jp // L
        vflat = np.zeros((rows_n, jp), np.float32)
        pflat = np.zeros((rows_n, jp), np.uint8)
        vflat[:, :J], pflat[:, :J] = vals, pos
        vflat, pflat = vflat.reshape(-1), pflat.reshape(-1)
        if not vflat.size:
            vflat, pflat = np.zeros(L, np.float32), np.zeros(L, np.uint8)
        arrays = [("vals", vflat.shape, "float32"), ("pos", pflat.shape, "uint8")]

        def index_expr(row, gv, v):
            e = f'(({gv} - {row} * {gl}) * {L} + {v}) // {n} * {group} + T.Cast("int32", pos[{gv} * {L} + {v}])'
            return f"T.min({e}, {k - 1})" if jp != J else e

        src = emit_gather_rows(
            name, m=m, k=k, n=rows_n, lanes=L, threads=tgt.threads, gather=tgt.gather, arrays=arrays,
            row_groups=lambda row: (f"{row} * {gl}", f"{row} * {gl} + {gl}"), index_expr=index_expr,
            chunked=False, n_chunks=1, bias=bias is not None, activation=activation)
        consts = (vflat, pflat) + extra
    elif variant == "panel":
        vflat, pflat = vals.reshape(-1), pos.reshape(-1)
        if not vflat.size:
            vflat, pflat = np.zeros(1, np.float32), np.zeros(1, np.uint8)
        plan = plan_panel(m, g * group, 1, group, tgt, **panel_opts)  # kc: whole groups
        gc = plan.kc // group
        if plan.panels > 1:
            first = lambda ib, p: f"{ib} * {J} + {p} * {gc * n}"  # noqa: E731
            end = lambda ib, p: f"{ib} * {J} + T.min({p} * {gc} + {gc}, {g}) * {n}"  # noqa: E731
        else:
            first = lambda ib, p: f"{ib} * {J}"  # noqa: E731
            end = lambda ib, p: f"{ib} * {J} + {J}"  # noqa: E731
        rows = PanelRows(
            r=1, c=1, nb=rows_n, n=rows_n, kp=g * group,
            arrays=[("vals", vflat.shape, "float32"), ("pos", pflat.shape, "uint8")],
            first=first, end=end,
            col=lambda j, ib: f'({j} - {ib} * {J}) // {n} * {group} + T.Cast("int32", pos[{j}])',
            w=lambda j, rr, cc: f"vals[{j}]", work=np.full(rows_n, J + 2.0 * plan.panels),
            fixed=J if plan.panels == 1 else None, extra={"k": k})
        src, cptr = emit_panel_matmul(name, m=m, rows=rows, plan=plan, tgt=tgt, bias=bias is not None,
                                      activation=activation)
        consts = (vflat, pflat) + ((cptr,) if cptr is not None else ()) + extra
        info["plan"] = plan
    else:
        raise ValueError(f"nm_matmul: unknown variant {variant!r}")
    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(m, rows_n), out_dtype="float32",
                        in_shape=(m, k), info=info, _reference=matmul_reference(weight, bias, activation))
