"""Unstructured sparse matmul ``Y[M, N] = act(X[M, K] @ W[N, K]^T + bias)`` from compressed rows of W.

Layouts (float32 values, column indices uint16 when K <= 65536 else int32; exact up to summation order):

* ``gather`` (M < ``min_panel_m``): each row's nonzeros padded to whole vectors of ``lanes`` entries; constants
  ``(vals[G*lanes], idx[G*lanes], gptr[N+1] (in vectors), cptr[chunks+1] (row blocks per thread))``.
* ``panel`` (M >= ``min_panel_m``): CSR in K-panel-major order ``(vals[nnz], idx[nnz], ptr[panels*N+1],
  cptr[chunks+1])``; the kernel transposes X into an ``X^T[K, Mp]`` workspace and vectorizes over M (see
  :mod:`._panel`).

Empty rows give ``act(bias)``. Terms with W == 0 are skipped, so a NaN/Inf in X at such a column does not
propagate as in a dense product (documented contract of the sparse kernels).
"""

from __future__ import annotations

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.forms import Encoded
from sparseforge.ir.forms.csr import row_entries

from ._common import (SparseKernel, balanced_chunks, check_operand, index_dtype, matmul_reference, parse,
                      resolve_target, unique_name)
from ._gather import emit_gather_rows
from ._panel import csr_panel_rows, emit_panel_matmul, plan_panel

MIN_PANEL_M = 3


def csr_pack_padded(weight, lanes: int):
    """Row-padded CSR: (vals, idx, gptr) with every row padded to a multiple of ``lanes`` entries (padding: value 0
    at the row's last column). ``weight``: an encoded operand of any form, or a dense matrix."""
    enc = weight if isinstance(weight, Encoded) else forms.encode(np.asarray(weight, np.float32), "csr")
    n, k = enc.shape
    idt = index_dtype(k)
    entry_vals, entry_cols, rowptr = row_entries(enc)
    counts = np.diff(rowptr).astype(np.int64)
    groups = (counts + lanes - 1) // lanes
    gptr = np.concatenate([[0], np.cumsum(groups)]).astype(np.int32)
    total = int(gptr[-1]) * lanes
    vals = np.zeros(max(total, lanes), np.float32)
    idx = np.zeros(max(total, lanes), idt)
    for i in np.flatnonzero(counts):
        cols = entry_cols[rowptr[i]:rowptr[i + 1]]
        s = int(gptr[i]) * lanes
        vals[s:s + len(cols)] = entry_vals[rowptr[i]:rowptr[i + 1]]
        idx[s:s + len(cols)] = cols
        idx[s + len(cols):int(gptr[i + 1]) * lanes] = cols[-1]  # a valid, already cached column
    return vals, idx, gptr


def csr_matmul(weight, m, *, bias=None, activation="none", target=None, name=None,
               min_panel_m: int = MIN_PANEL_M, variant: str | None = None, **panel_opts) -> SparseKernel:
    """Unstructured sparse matmul kernel specialized to ``weight`` for batch ``m``: an encoded operand of any form
    (:class:`~sparseforge.ir.forms.Encoded`, its nonzeros are used) or a dense ``[N, K]`` matrix.

    variant: "gather" or "panel" to override the choice by ``min_panel_m``; ``panel_opts`` are passed to
    :func:`._panel.emit_panel_matmul` (tile sizes) for tuning.
    """
    weight, bias = check_operand(weight, bias, activation, "csr_matmul", "csr")
    tgt = resolve_target(target)
    n, k = weight.shape
    name = name or unique_name("csr_matmul")
    variant = variant or ("panel" if m >= min_panel_m else "gather")
    L = tgt.lanes
    extra = (bias,) if bias is not None else ()
    nnz = weight.nnz
    if variant == "gather":
        vals, idx, gptr = csr_pack_padded(weight, L)
        blocks = n // L
        work = (gptr[L:blocks * L + 1:L] - gptr[0:blocks * L:L]) + L if blocks else np.zeros(0)
        cptr = balanced_chunks(work, tgt.threads * 2 if tgt.threads > 1 else 1)
        arrays = [("vals", vals.shape, "float32"), ("idx", idx.shape, str(idx.dtype)),
                  ("gptr", gptr.shape, "int32"), ("cptr", cptr.shape, "int32")]
        src = emit_gather_rows(
            name, m=m, k=k, n=n, lanes=L, threads=tgt.threads, gather=tgt.gather, arrays=arrays,
            row_groups=lambda row: (f"gptr[{row}]", f"gptr[{row} + 1]"),
            index_expr=lambda row, g, v: f'T.Cast("int32", idx[{g} * {L} + {v}])',
            chunked=True, n_chunks=len(cptr) - 1, bias=bias is not None, activation=activation)
        constants = (vals, idx, gptr, cptr) + extra
        info = dict(format="csr-padded", variant="gather", nnz=nnz, stored=len(vals))
    elif variant == "panel":
        plan = plan_panel(m, k, 1, 1, tgt, **panel_opts)
        rows, packed = csr_panel_rows(weight, plan)
        src, cptr = emit_panel_matmul(name, m=m, rows=rows, plan=plan, tgt=tgt, bias=bias is not None,
                                      activation=activation)
        constants = packed + ((cptr,) if cptr is not None else ()) + extra
        info = dict(format="csr-panels", variant="panel", nnz=nnz, stored=len(packed[0]), plan=plan)
    else:
        raise ValueError(f"csr_matmul: unknown variant {variant!r}")
    return SparseKernel(name=name, func=parse(src), constants=constants, out_shape=(m, n), out_dtype="float32",
                        in_shape=(m, k), info=info, _reference=matmul_reference(weight, bias, activation))
