"""CUDA sparse kernels with the CPU builders' signatures, returning :class:`~..kernels.SparseKernel`.

Contract (float32): ``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias[N])`` with W constant; conv1x1 NCHW
``Y[b, co, p] = act(sum_ci W[co, ci] X[b, ci, p] + bias[co])``. Called as ``func(X, *constants, Y)``
(destination passing, as ``relax.call_tir``); the sparsity pattern lives in index arrays (constants, see
:mod:`._pack`). Every func is hand-scheduled (threads bound, ``tirx.is_scheduled``: dlight leaves it alone).

Variants: ``"rows"`` (M <= ``SMALL_M``: a lane group per block row, :mod:`._rows`) and ``"panel"`` (larger M:
shared-memory X tiles, :mod:`._panel`). fp32 CUDA cores only. Exact up to summation order; terms with W == 0 are
skipped (a NaN/Inf in X at such a column does not propagate, as on the CPU).
"""

from __future__ import annotations

import os

from sparseforge.ir.forms import Encoded

from ..kernels._common import (SparseKernel, check_bias_activation, check_common, check_operand, conv1x1_reference,
                               conv_operand, matmul_reference)
from ..kernels.nm import nm_operand
from . import _pack
from ._emit import Src, parse
from .build import arch_of
from ._panel import emit_panel, panel_unit, plan_panel
from ._rows import emit_rows

SMALL_M = 16  # largest M handled by the lane-group ("rows") kernel by default

_counter = [0]


def _name(prefix: str, name: str | None) -> str:
    if name:
        return name
    _counter[0] += 1
    return f"{prefix}_cuda_{os.getpid()}_{_counter[0]}"


def _arch(target) -> str:
    return arch_of(target)


def _matmul(who, weight, m, bias, activation, target, name, variant, rows_pattern, panel_pattern, unit, opts):
    """``weight``: the encoded operand (see :func:`..kernels._common.check_operand`)."""
    m = int(m)
    if m < 1:
        raise ValueError(f"{who}: m must be >= 1, got {m}")
    n, k = weight.shape
    arch = _arch(target)
    name = _name(who, name)
    variant = variant or ("rows" if m <= SMALL_M else "panel")
    src = Src()
    if variant == "rows":
        pat = rows_pattern()
        sched = emit_rows(src, name, pat, m=m, bias=bias is not None, activation=activation,
                          group=opts.get("group"), threads=opts.get("threads"), rs=opts.get("rs"))
    elif variant == "panel":
        nb = -(-n // opts.get("_r", 1))
        plan = plan_panel(m, k, opts.get("_r", 1), nb, unit=unit, mr=opts.get("mr"), rb=opts.get("rb"),
                          nw=opts.get("nw"), tk=opts.get("tk"), rs=opts.get("rs"))
        pat = panel_pattern(plan.tk)
        sched = emit_panel(src, name, pat, plan, m=m, bias=bias is not None, activation=activation)
    else:
        raise ValueError(f"{who}: unknown variant {variant!r} (expected 'rows' or 'panel')")
    consts = tuple(pat.consts) + ((bias,) if bias is not None else ())
    info = dict(pat.info, variant=variant, arch=arch, device="cuda", schedule=sched)
    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(m, n), out_dtype="float32",
                        in_shape=(m, k), info=info, _reference=matmul_reference(weight, bias, activation))


def csr_matmul(weight, m, *, bias=None, activation="none", target=None, name=None, variant: str | None = None,
               **opts) -> SparseKernel:
    """Unstructured sparse matmul (CSR) for batch ``m``; ``weight`` an encoded operand of any form or dense [N, K].
    opts: group/threads/rs (rows kernel), mr/rb/nw/tk/rs (panel kernel); see :mod:`._rows` / :mod:`._panel`."""
    w, bias = check_operand(weight, bias, activation, "csr_matmul", "csr")
    return _matmul("csr_matmul", w, m, bias, activation, target, name, variant,
                   lambda: _pack.csr_rows(w), lambda tk: _pack.csr_panels(w, tk), panel_unit(), opts)


def bsr_matmul(weight, m, *, block=None, bias=None, activation="none", target=None, name=None,
               variant: str | None = None, **opts) -> SparseKernel:
    """Block-sparse matmul with ``block = (rows, cols)`` blocks of W (any N, K: W padded logically); ``weight`` an
    encoded operand (a BSR one brings its block shape) or dense [N, K] (default block (4, 1))."""
    if block is None:
        block = weight.block if isinstance(weight, Encoded) and weight.block else (4, 1)
    r, c = int(block[0]), int(block[1])
    if r < 1 or c < 1:
        raise ValueError(f"bsr_matmul: bad block {block}")
    w, bias = check_operand(weight, bias, activation, "bsr_matmul", "bsr", block=(r, c))
    return _matmul("bsr_matmul", w, m, bias, activation, target, name, variant,
                   lambda: _pack.bsr_rows(w, r, c), lambda tk: _pack.bsr_panels(w, r, c, tk), panel_unit(c),
                   dict(opts, _r=r))


def nm_matmul(weight, m, *, n=2, group=4, bias=None, activation="none", target=None, name=None,
              variant: str | None = None, **opts) -> SparseKernel:
    """N:M sparse matmul: at most ``n`` nonzeros in every ``group`` consecutive weights along K (ValueError
    otherwise); ``weight`` an N:M encoded operand (its own n:group) or dense [N, K]. Constants
    ``(vals [N*G*n], pos [N*G*n] uint8[, bias])``, the same for both variants."""
    if isinstance(weight, Encoded):
        if weight.fmt != "nm":
            raise ValueError(f"nm_matmul: needs an N:M operand, got {weight.fmt}")
        w, bias = weight, check_bias_activation(weight.shape[0], bias, activation, "nm_matmul")
    else:
        dense, bias = check_common(weight, bias, activation, "nm_matmul")
        w = nm_operand(dense, n, group)  # validates early
    group = w.nm[1]
    return _matmul("nm_matmul", w, m, bias, activation, target, name, variant,
                   lambda: _pack.nm_rows(w), lambda tk: _pack.nm_rows(w, tk=tk), panel_unit(1, group), opts)


def sparse_conv1x1(weight, batch, height, width, *, bias=None, activation="none", target=None, name=None,
                   block: tuple[int, int] | None = None, **opts) -> SparseKernel:
    """Sparse 1x1 convolution, NCHW, ``weight`` an encoded operand of any form or dense [Cout, Cin] (or
    [Cout, Cin, 1, 1]); CSR (``block=None``) or BSR ``block=(r, c)``. Panel kernel over pixels (coalesced X reads
    and Y writes along h*w)."""
    weight, bias = conv_operand(weight, bias, activation, "sparse_conv1x1", block)
    cout, cin = weight.shape
    batch, height, width = int(batch), int(height), int(width)
    hw = height * width
    arch = _arch(target)
    name = _name("sparse_conv1x1", name)
    r, c = (1, 1) if block is None else (int(block[0]), int(block[1]))
    if r < 1 or c < 1:
        raise ValueError(f"sparse_conv1x1: bad block {block}")
    plan = plan_panel(hw, cin, r, -(-cout // r), unit=panel_unit(c), batch=batch, mr=opts.get("mr"),
                      rb=opts.get("rb"), nw=opts.get("nw"), tk=opts.get("tk"), rs=opts.get("rs"))
    pat = _pack.csr_panels(weight, plan.tk) if (r, c) == (1, 1) else _pack.bsr_panels(weight, r, c, plan.tk)
    src = Src()
    sched = emit_panel(src, name, pat, plan, m=hw, bias=bias is not None, activation=activation,
                       conv=(batch, height, width))
    consts = tuple(pat.consts) + ((bias,) if bias is not None else ())
    reference = conv1x1_reference(weight, bias, activation, batch, height, width)

    info = dict(pat.info, format="csr" if block is None else f"bsr{r}x{c}", variant="panel", arch=arch,
                device="cuda", schedule=sched, nnz=weight.nnz)
    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(batch, cout, height, width),
                        out_dtype="float32", in_shape=(batch, cin, height, width), info=info,
                        _reference=reference)


__all__ = ["SMALL_M", "bsr_matmul", "csr_matmul", "nm_matmul", "sparse_conv1x1"]
