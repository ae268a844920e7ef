"""TE definition of the dense (matmul) kernel on a packed right-hand side, and its tile policy.

Layout contract (float32 only):

* ``A``: ``[*batch_a, M, K]`` row-major activations.
* ``Bp``: ``[*batch_b, ceil(N/NR), K, NR]``, i.e. ``B[*batch_b, K, N]`` cut into column panels of
  ``NR`` (a multiple of the SIMD width), each panel stored K-major, zero-padded past ``N``.
  A 2-D ``B`` (weights) has no batch dims; batch dims broadcast like ``numpy.matmul``.
* Output ``Y``: ``[*broadcast(batch_a, batch_b), M, N]``.

The main block ``C`` is computed on a padded domain (``M`` rounded up to ``MR`` rows; A's row
index is clamped, so every tile is full and branch-free) and carries the ``_contract`` annotations
the :class:`~.dense.Dense` rule reads. With a 2-D ``B``, all batch dims of ``A`` are folded into
the row dimension (one big GEMM); otherwise the batch stays a separate loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .. import _tvm
from . import _contract as C

te = _tvm.te
tirx = _tvm.tirx

MAX_TILE_M = 8


#: Relative throughput of a register tile ``NR / lanes`` vectors wide (AVX2 Zen 3, 128-row GEMMs, K 256-768): one
#: vector is broadcast-bound (0.55-0.8 of three), four leave too few accumulator rows.
PANEL_RATE = {3: 1.0, 2: 0.92, 4: 0.8, 1: 0.6}


def dense_tile_n(n: int, lanes: int, registers: int) -> int:
    """Panel width NR for ``n`` output columns: the candidate with the least padded work per :data:`PANEL_RATE`.

    Candidates are 3, 2, 4 and 1 vectors (preferred in that order on ties), limited to what leaves room for at
    least 4 accumulator rows in a 3/4-of-the-register-file budget. Weighing padding alone picked one vector for
    N = 50257 (GPT-2's LM head, 7 padded columns against 23), which ran 1.19x slower than three.
    """
    budget = registers * 3 // 4
    best = None
    for vecs in (3, 2, 4, 1):
        if budget // vecs < 4 and vecs != 1:
            continue
        nr = vecs * lanes
        cost = -(-n // nr) * nr / PANEL_RATE[vecs]
        if best is None or cost < best[0]:
            best = (cost, nr)
    return best[1]


def tile_rate(fill: float) -> float:
    """Relative throughput of a register tile whose accumulators fill ``fill`` of the 3/4-of-the-registers budget:
    ``fill ** 0.4``.

    Measured on Zen 3 (AVX2, budget 12) on 1x1 and strided convolutions, GFLOP/s relative to the full tile (model
    in parentheses): 4 accumulators 0.51 (0.64), 6 0.72-0.75 (0.76), 8 0.93 (0.85), 9 0.90-0.95 (0.89), 10
    0.92-0.94 (0.93), 12 1.0. With fewer independent accumulators the FMA pipes wait on each other. Near ties it
    decides right: 49 pixels x 2 blocks take 5 x 2 (6 x 2 pads 5 and ran 5-7% slower), 784 take 6 x 2 (1.08x over
    5 x 2)."""
    return max(fill, 0.0) ** 0.4


def dense_tile_m(m: int, nr: int, lanes: int, registers: int, rate: Callable[[float], float] | None = None) -> int:
    """Rows MR of the register tile: ``MR * NR / lanes`` accumulators fit 3/4 of the registers, capped at 8; among
    the halves-to-max range, the one with the least padded work per ``rate`` (default :func:`tile_rate`; larger on
    ties).

    Least padding alone chose 2 x 3 tiles for 7 x 7 images (49 rows: 1 padded against 3 with 4 x 3), 53 against
    71-85 GFLOP/s on MobileNetV2's 160 -> 960 layer."""
    budget = registers * 3 // 4
    vecs = max(1, nr // lanes)
    mr_max = max(1, min(MAX_TILE_M, budget // vecs))
    if m <= mr_max:
        return max(1, m)
    rate = rate or tile_rate
    candidates = range(mr_max, max(1, mr_max // 2) - 1, -1)
    return min(candidates, key=lambda mr: (-(-m // mr) * mr / rate(mr * vecs / budget), -mr))


def pack_panels(B, nr: int, name: str = "pack_panels"):
    """``B[..., K, N]`` -> ``Bp[..., ceil(N/nr), K, nr]`` (zero past ``N``): the layout of ``Bp``.

    A plain injective TE compute (not ``relax.layout_transform``, whose legalized form TVM marks
    opaque), so FuseOps can fuse it into the kernel producing ``B``; on a constant ``B``,
    ``FoldConstant`` evaluates it at compile time.
    """
    *batch, k, n = (int(s) for s in B.shape)
    nb = -(-n // nr)

    def fn(*idx):
        *bidx, jb, kk, jj = idx
        j = jb * nr + jj
        if nb * nr == n:
            return B[(*bidx, kk, j)]
        return tirx.if_then_else(j < n, B[(*bidx, kk, tirx.min(j, n - 1))], tirx.const(0.0, B.dtype))

    return te.compute((*batch, nb, k, nr), fn, name=name)


def _flat_to_index(flat, dims):
    """Row-major multi-index of ``flat`` over ``dims`` (static ints)."""
    idx = []
    for pos, d in enumerate(dims):
        stride = math.prod(dims[pos + 1:])
        idx.append((flat // stride) % d if pos else flat // stride)
    return idx


def _bcast_index(out_idx, out_dims, in_dims):
    """Index into a broadcast operand whose batch dims are right-aligned against the output's."""
    off = len(out_dims) - len(in_dims)
    return [0 if in_dims[p] == 1 and out_dims[p + off] != 1 else out_idx[p + off] for p in range(len(in_dims))]


def dense_packed(A, Bp, n: int, tile_m: int, lanes: int, name: str = "dense"):
    """``Y = A @ B`` with ``B`` given packed as ``Bp`` (see module docstring); ``n`` = true N."""
    a_shape = [int(s) for s in A.shape]
    b_shape = [int(s) for s in Bp.shape]
    *batch_a, m, k = a_shape
    *batch_b, nb, kb, nr = b_shape
    assert kb == k, (a_shape, b_shape)
    np_ = nb * nr
    mr = tile_m
    rk = te.reduce_axis((0, k), name="k")
    ann = {C.KERNEL: C.DENSE, C.TILE_M: mr, C.TILE_N: nr, C.LANES: lanes}

    if not batch_b:
        # Fold every batch dim of A into the rows: one GEMM of (prod(batch_a) * m) rows.
        rows = math.prod(batch_a) * m
        rows_p = -(-rows // mr) * mr
        a_dims = batch_a + [m]

        def c_fn(r, j):
            rr = tirx.min(r, rows - 1) if rows_p != rows else r
            return te.sum(A[(*_flat_to_index(rr, a_dims), rk)] * Bp[j // nr, rk, j % nr], axis=rk)

        ann[C.BATCH_DIMS] = 0
        cp = te.compute((rows_p, np_), c_fn, name=f"{name}_acc", attrs=ann)

        def y_fn(*idx):
            *lead, j = idx
            flat = 0
            for v, d in zip(lead, a_dims):
                flat = flat * d + v
            return cp[flat, j]

        return te.compute((*a_dims, n), y_fn, name=name)

    out_batch = _broadcast_shape(batch_a, batch_b)
    nbatch = math.prod(out_batch)
    m_p = -(-m // mr) * mr

    def cb_fn(b, r, j):
        bidx = _flat_to_index(b, out_batch)
        ia = _bcast_index(bidx, out_batch, batch_a)
        ib = _bcast_index(bidx, out_batch, batch_b)
        rr = tirx.min(r, m - 1) if m_p != m else r
        return te.sum(A[(*ia, rr, rk)] * Bp[(*ib, j // nr, rk, j % nr)], axis=rk)

    ann[C.BATCH_DIMS] = 1
    cp = te.compute((nbatch, m_p, np_), cb_fn, name=f"{name}_acc", attrs=ann)

    def yb_fn(*idx):
        *bidx, i, j = idx
        flat = 0
        for v, d in zip(bidx, out_batch):
            flat = flat * d + v
        return cp[flat, i, j]

    return te.compute((*out_batch, m, n), yb_fn, name=name)


def _broadcast_shape(a, b):
    out = []
    for pos in range(max(len(a), len(b))):
        da = a[pos - max(len(a), len(b)) + len(a)] if pos >= max(len(a), len(b)) - len(a) else 1
        db = b[pos - max(len(a), len(b)) + len(b)] if pos >= max(len(a), len(b)) - len(b) else 1
        if da != db and 1 not in (da, db):
            raise ValueError(f"batch dims {a} and {b} do not broadcast")
        out.append(max(da, db))
    return out
