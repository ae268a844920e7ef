"""Sparse 1x1 convolution, NCHW: ``Y[b, co, p] = act(sum_ci W[co, ci] * X[b, ci, p] + bias[co])``, p = h*W + w.

The "Fast Sparse ConvNets" (XNNPACK) design: a sparse-times-dense product vectorized over spatial positions, X
read in place (no transpose), Y written contiguously. W [Cout, Cin] is stored as CSR (``block=None``: values
float32, input-channel indices uint16 when Cin <= 65536) or, with ``block=(r, c)`` (c must divide Cin), as BSR,
in K-panel-major order (see :mod:`._panel`). Constants ``(vals, idx, ptr[, cptr][, bias])``. Parallel over
(batch, spatial tiles), or over output-channel chunks when there are too few tiles. Exact up to summation order.
"""

from __future__ import annotations

from ._common import SparseKernel, conv1x1_reference, conv_operand, parse, resolve_target, unique_name
from ._panel import emit_panel_conv, panel_rows, plan_panel


def sparse_conv1x1(weight, batch, height, width, *, bias=None, activation="none", target=None, name=None,
                   block: tuple[int, int] | None = None, **panel_opts) -> SparseKernel:
    """Sparse 1x1 convolution kernel specialized to ``weight``: an encoded operand of any form (CSR kernel over its
    nonzeros, or BSR with ``block``) or a dense [Cout, Cin] matrix (a [Cout, Cin, 1, 1] array is accepted)."""
    weight, bias = conv_operand(weight, bias, activation, "sparse_conv1x1", block)
    tgt = resolve_target(target)
    cout, cin = weight.shape
    hw = int(height) * int(width)
    name = name or unique_name("sparse_conv1x1")
    r, c = (1, 1) if block is None else (int(block[0]), int(block[1]))
    if cin % c:
        raise ValueError("sparse_conv1x1: block columns must divide Cin (X is read in place)")
    plan = plan_panel(hw, cin, r, c, tgt, **panel_opts)
    rows, packed, fmt = panel_rows(weight, (r, c), plan)
    src, cptr = emit_panel_conv(name, batch=int(batch), spatial=(int(height), int(width)), rows=rows, plan=plan,
                                tgt=tgt, bias=bias is not None, activation=activation)
    consts = packed + ((cptr,) if cptr is not None else ()) + ((bias,) if bias is not None else ())
    reference = conv1x1_reference(weight, bias, activation, int(batch), int(height), int(width))

    return SparseKernel(name=name, func=parse(src), constants=consts, out_shape=(batch, cout, height, width),
                        out_dtype="float32", in_shape=(batch, cin, height, width),
                        info=dict(format=fmt, variant="panel", nnz=weight.nnz, plan=plan),
                        _reference=reference)
