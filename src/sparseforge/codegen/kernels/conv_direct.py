"""Sparse direct 2-D convolution of any kernel size, stride, padding, dilation and group count (NCHW or NCHWc).

``Y[b, co, oh, ow] = act(bias[co] + sum_{ci, i, j} W[co, ci, i, j] X[b, g(co) Cin/G + ci, oh s + i d - p, ...])``.

Design: the panel kernel of :mod:`._panel` (one weight broadcast, a tile of output positions per vector FMA)
with every weight entry addressing a *shifted window* of one prepared input plane instead of a row of a matrix:

* **Phases.** With stride ``s`` the padded input is split into ``s_h * s_w`` phase planes
  ``P[ci, a, c][i, j] = Xpad[ci, i s_h + a, j s_w + c]`` (space-to-depth); tap ``(i, j)`` of a stride-``s`` conv
  reads phase ``(i d % s_h, j d % s_w)`` at offset ``(i d // s_h, j d // s_w)``: a stride-1 tap. Only the phases
  some tap reads are kept (a strided 1x1 conv keeps one). Stride 1 has one phase (the zero-padded input).
* **Prepared input.** A prologue writes the phase planes (zero padding included) into a workspace
  ``Xs[B, C' * Hq * Wq]`` (``C' = Cin * phases``), with ``Hq = OH + max row offset + 1`` and
  ``Wq = OW + max column offset``, reading the input in NCHW or NCHW{L}c.
* **Sweep.** Output positions ``q = oh * Wq + ow`` run contiguously over ``OH * Wq`` (``ow >= OW`` are computed
  and dropped): entry ``(co, ci, i, j)`` adds ``w * Xs[b, off + q]`` with
  ``off = plane(ci, phase) * Hq * Wq + row offset * Wq + column offset``, stored per entry as an int32.
  Every read stays in ``Xs``. Entries of a group's output channels address only that group's planes.
* **Crop.** Finished rows go to a workspace ``Yw[B, Cout, OH * Wq]`` (contiguous, vectorized stores); an
  epilogue copies the ``OW`` valid columns of each row into ``Y`` (NCHW, or NCHW{L}c with zero padding lanes).

W (``[Cout, Cin/G * kh * kw]``, reduction ordered ``(ci, kh, kw)``) is stored as CSR (any form's nonzeros,
constants ``(vals, off, ptr[, cptr][, bias])``) or as BSR ``r x 1`` blocks (``r`` output channels sharing a tap,
constants ``(data, off, ptr, ...)``); wider blocks would need adjacent taps to be adjacent in memory, which they are
not. Exact up to summation order.
"""

from __future__ import annotations

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.conv import ConvSpec
from sparseforge.ir.conv import reference as conv_reference
from sparseforge.ir.forms import Encoded

from ._common import (SparseKernel, apply_activation_np, check_operand, parallel_or_serial, parse, resolve_target,
                      unique_name)
from ._panel import ConvIO, bsr_panel_rows, csr_panel_rows, emit_panel_conv, plan_panel
from .conv1x1_nchwc import from_nchwc, to_nchwc


class Geometry:
    """The prepared-input geometry of a :class:`ConvSpec`: the phases some tap reads, plane sizes, offsets."""

    def __init__(self, spec: ConvSpec):
        self.spec = spec
        (kh, kw), (sh, sw), (dh, dw) = spec.kernel, spec.strides, spec.dilations
        self.oh, self.ow = spec.out_hw
        self.row_off = ((kh - 1) * dh) // sh
        self.col_off = ((kw - 1) * dw) // sw
        self.hq = self.oh + self.row_off + 1
        self.wq = self.ow + self.col_off
        #: (row phase, column phase) of every plane kept per input channel: only those some tap reads (a strided
        #: 1x1 conv keeps one of its s_h * s_w phases)
        self.phase_list = sorted({((i * dh) % sh, (j * dw) % sw) for i in range(kh) for j in range(kw)})
        self.phases = len(self.phase_list)
        self.planes = spec.x_shape[1] * self.phases
        self.plane = self.hq * self.wq
        self.width = self.oh * self.wq

    def offsets(self) -> np.ndarray:
        """``off[group, col]``: the Xs offset of reduction column ``col`` for the output channels of each group,
        shape ``[G, Cin/G * kh * kw]`` (int64)."""
        spec = self.spec
        (kh, kw), (sh, sw), (dh, dw) = spec.kernel, spec.strides, spec.dilations
        ci, i, j = np.meshgrid(np.arange(spec.cin_per_group), np.arange(kh), np.arange(kw), indexing="ij")
        ci, i, j = ci.ravel(), i.ravel(), j.ravel()
        index = {phase: p for p, phase in enumerate(self.phase_list)}
        phase = np.array([index[((a * dh) % sh, (b * dw) % sw)] for a, b in zip(i, j)], np.int64)
        local = ((i * dh) // sh) * self.wq + (j * dw) // sw
        groups = np.arange(spec.group)[:, None] * spec.cin_per_group
        return ((groups + ci[None, :]) * self.phases + phase[None, :]) * self.plane + local[None, :]


def _with_offsets(rows, packed, offsets: np.ndarray, r: int):
    """Replace the column indices of packed panel rows by Xs offsets (per the group of each row's channels)."""
    groups = offsets.shape[0]
    rows_per_group = rows.n // groups
    vals, idx, ptr = packed
    nb = len(rows.work)
    count = int(ptr[-1])
    key = np.searchsorted(ptr, np.arange(count), side="right") - 1  # (panel, block row) of each entry
    group = np.minimum((key % nb) * r // rows_per_group, groups - 1)
    off = offsets[group, idx[:count].astype(np.int64)].astype(np.int32) if count else np.zeros(1, np.int32)
    arrays = list(rows.arrays)
    arrays[1] = (arrays[1][0], off.shape, "int32")
    rows.arrays = arrays
    name = arrays[1][0]
    rows.col = lambda j, ib: f"{name}[{j}]"
    return rows, (vals, off, ptr)


def sparse_conv2d(weight, spec: ConvSpec, *, bias=None, activation: str = "none", target=None, name=None,
                  block: tuple[int, int] | None = None, lanes: int | None = None, **panel_opts) -> SparseKernel:
    """Sparse direct convolution kernel of ``spec`` specialized to ``weight`` (an encoded ``[Cout, K]`` operand of
    any form, or a dense ``[Cout, K]`` / ``[Cout, Cin/G, kh, kw]`` array). ``block=(r, 1)``: BSR blocks of r output
    channels; None: CSR over the nonzeros. ``lanes``: NCHW{lanes}c input and output (None: NCHW)."""
    fname = "sparse_conv2d"
    if not isinstance(weight, Encoded):
        weight = np.asarray(weight, np.float32).reshape(spec.cout, -1)
    if tuple(weight.shape) != (spec.cout, spec.reduction):
        raise ValueError(f"{fname}: weight {tuple(weight.shape)} does not match the conv [{spec.cout}, "
                         f"{spec.reduction}]")
    r, c = (1, 1) if block is None else (int(block[0]), int(block[1]))
    if c != 1:
        raise ValueError(f"{fname}: BSR blocks must be r x 1 (adjacent taps are not adjacent in memory)")
    weight, bias = check_operand(weight, bias, activation, fname, "csr" if block is None else "bsr",
                                 block=None if block is None else (r, c))
    if spec.group > 1 and (spec.cout // spec.group) % r:
        raise ValueError(f"{fname}: BSR rows {r} must divide the output channels per group")
    tgt = resolve_target(target)
    geo = Geometry(spec)
    if geo.planes * geo.plane >= 2 ** 31:
        raise ValueError(f"{fname}: prepared input too large for int32 offsets")
    name = name or unique_name(fname)
    plan = plan_panel(geo.width, spec.reduction, r, 1, tgt, **panel_opts)
    if r == 1:
        rows, packed = csr_panel_rows(weight, plan)
        fmt = "csr"
    else:
        rows, packed = bsr_panel_rows(weight, r, 1, plan)
        fmt = f"bsr{r}x1"
    rows, packed = _with_offsets(rows, packed, geo.offsets(), r)
    batch = spec.x_shape[0]
    src, cptr = emit_panel_conv(name, batch=batch, rows=rows, plan=plan, tgt=tgt, bias=bias is not None,
                                activation=activation, io=lambda s: _direct_io(s, spec, geo, tgt, lanes))
    consts = packed + ((cptr,) if cptr is not None else ()) + ((bias,) if bias is not None else ())
    in_shape, out_shape = _shapes(spec, lanes)
    dense = forms.get(weight.fmt).decode(weight)

    def reference(x):
        x4 = from_nchwc(x, spec.x_shape[1]) if lanes else x
        y = apply_activation_np(conv_reference(spec, dense, np.asarray(x4, np.float64), bias).astype(np.float64),
                                activation).astype(np.float32)
        return to_nchwc(y, lanes) if lanes else y

    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=out_shape, out_dtype="float32",
                        in_shape=in_shape, info=dict(format=fmt, variant="direct", nnz=weight.nnz, plan=plan,
                                                     conv=spec.key(), layout=f"NCHW{lanes}c" if lanes else "NCHW"),
                        _reference=reference)


def _shapes(spec: ConvSpec, lanes: int | None):
    b, cin, h, w = spec.x_shape
    oh, ow = spec.out_hw
    if lanes:
        return (b, -(-cin // lanes), h, w, lanes), (b, -(-spec.cout // lanes), oh, ow, lanes)
    return (b, cin, h, w), (b, spec.cout, oh, ow)


def _direct_io(src, spec: ConvSpec, geo: Geometry, tgt, lanes: int | None) -> ConvIO:
    b_, cin, h, w = spec.x_shape
    (sh, sw), (pt, pl, _, _) = spec.strides, spec.pads
    n, oh, ow, wq, hq = spec.cout, geo.oh, geo.ow, geo.wq, geo.hq
    in_shape, out_shape = _shapes(spec, lanes)
    L = tgt.lanes

    def x_at(b, ci, ih, iw):
        return f"X[{b}, {ci} // {lanes}, {ih}, {iw}, {ci} % {lanes}]" if lanes else f"X[{b}, {ci}, {ih}, {iw}]"

    def prologue(src):
        src(f'Xs = T.alloc_buffer(({b_}, {geo.planes * geo.plane}), "float32")')
        src(f'Yw = T.alloc_buffer(({b_}, {n}, {geo.width}), "float32")')
        tasks = b_ * cin
        for p, (pa, pc) in enumerate(geo.phase_list):  # one loop nest per phase read, phase offsets constant
            j0 = max(0, -(-(pl - pc) // sw))  # valid columns j: 0 <= j * sw + pc - pl < w
            j1 = max(j0, min(wq, (w - 1 + pl - pc) // sw + 1))
            with src.block(f"for bc in {parallel_or_serial(tgt.threads, tasks)}({tasks}):"):
                src.let("b", f"bc // {cin}")
                src.let("ci", f"bc % {cin}")
                base = f"(ci * {geo.phases} + {p}) * {geo.plane}"
                with src.block(f"for i in T.serial({hq}):"):
                    src.let("ih", f"i * {sh} + {pa - pt}")
                    row = f"{base} + i * {wq}"
                    with src.block(f"if 0 <= ih and ih < {h}:"):
                        if j0:
                            with src.block(f"for j in T.serial({j0}):"):
                                src(f"Xs[b, {row} + j] = T.float32(0)")
                        if j1 > j0:
                            with src.block(f"for j in T.serial({j0}, {j1}):"):
                                src(f"Xs[b, {row} + j] = {x_at('b', 'ci', 'ih', f'j * {sw} + {pc - pl}')}")
                        if wq > j1:
                            with src.block(f"for j in T.serial({j1}, {wq}):"):
                                src(f"Xs[b, {row} + j] = T.float32(0)")
                    with src.block("else:"):
                        with src.block(f"for j in T.serial({wq}):"):
                            src(f"Xs[b, {row} + j] = T.float32(0)")

    def store(b, acc, row, off, t0, width, tvw):
        with src.block(f"for vo in T.unroll({width // tvw}):"):
            with src.block(f"for vi in T.vectorized({tvw}):"):
                src(f"Yw[{b}, {row}, {t0} + vo * {tvw} + vi] = {acc}[{off} + vo * {tvw} + vi]")

    def epilogue(src):
        if lanes:
            cb = -(-n // lanes)
            tasks = b_ * cb
            with src.block(f"for bc in {parallel_or_serial(tgt.threads, tasks)}({tasks}):"):
                with src.block(f"for yh in T.serial({oh}):"):
                    with src.block(f"for yw in T.serial({ow}):"):
                        with src.block(f"for l in T.vectorized({lanes}):"):
                            co = f"bc % {cb} * {lanes} + l"
                            val = f"Yw[bc // {cb}, T.min({co}, {n - 1}), yh * {wq} + yw]"
                            if n % lanes:
                                val = f"T.if_then_else({co} < {n}, {val}, T.float32(0))"
                            src(f"Y[bc // {cb}, bc % {cb}, yh, yw, l] = {val}")
        else:
            tasks = b_ * n
            with src.block(f"for bc in {parallel_or_serial(tgt.threads, tasks)}({tasks}):"):
                with src.block(f"for yh in T.serial({oh}):"):
                    with src.block(f"for yw in T.vectorized({ow}):" if ow <= 4 * L else
                                   f"for yw in T.serial({ow}):"):
                        src(f"Y[bc // {n}, bc % {n}, yh, yw] = Yw[bc // {n}, bc % {n}, yh * {wq} + yw]")

    return ConvIO([("X", in_shape, "float32")], [("Y", out_shape, "float32")], geo.width, prologue,
                  lambda b, kk, t0, q: f"Xs[{b}, {kk} + {t0} + {q}]", store, epilogue)
