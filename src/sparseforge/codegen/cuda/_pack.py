"""Weight packing for the CUDA kernels: the sparsity pattern as index arrays, plus how a kernel walks them.

Formats (values float32; column indices uint16 when they fit, else int32; pointers int32):

* rows (small-M kernel, :mod:`._rows`): CSR ``(vals[nnz], idx[nnz], rowptr[N+1])``; BSR r x c
  ``(data[nnzb, c, r], bidx[nnzb], bptr[NB+1])`` (block j's rows contiguous for each column); N:M
  ``(vals[N, G*n], pos[N, G*n])`` (position of each kept weight inside its group, uint8).
* panels (large-M kernel, :mod:`._panel`): the same values re-ordered K-panel-major (panel p covers columns
  [p*tk, (p+1)*tk)), with panel-local column indices and ``ptr[P*NB+1]`` indexed by ``p*NB + block_row``;
  N:M needs no re-ordering (a fixed number of entries per row and panel).

A pattern object describes the walk with TVMScript expression callbacks; W is padded logically to whole blocks
and groups (zeros), never physically beyond the stored blocks. Empty weights keep 1-element buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..kernels.nm import nm_pack  # noqa: F401 - the same packing as the CPU kernels


def index_dtype(limit: int) -> str:
    """Narrowest unsigned-or-int32 dtype for indices in [0, limit)."""
    return "uint16" if limit <= 65536 else "int32"


def _nonempty(vals: np.ndarray, idx: np.ndarray):
    if len(vals):
        return vals, idx
    return np.zeros((1,) + vals.shape[1:], np.float32), np.zeros(1, idx.dtype)


@dataclass
class Pattern:
    """How a kernel walks a packed weight.

    r, c: block rows/columns (1, 1 for CSR; 1, 1 for N:M whose entries are single weights). nb: block rows.
    start(ib[, p]) / count(ib[, p]): first entry and number of entries of block row ib (in panel p).
    col(j, e, ib[, p]): first column of entry j (e = j - start), panel-local for panel patterns.
    w(j, rr, cc): weight of entry j at block row rr, block column cc.
    entries: mean number of (entry, column) pairs per block row (picks the lane-group size).
    """

    r: int
    c: int
    nb: int
    n: int
    k: int
    arrays: list[tuple[str, tuple[int, ...], str]]
    consts: tuple[np.ndarray, ...]
    start: Callable[..., str]
    count: Callable[..., str]
    col: Callable[..., str]
    w: Callable[[str, str, str], str]
    entries: float
    tk: int = 0  # panel width (panel patterns)
    info: dict = field(default_factory=dict)


def _cast(expr: str) -> str:
    return f'T.Cast("int32", {expr})'


# ------------------------------------------------------------------------------------------------------- CSR


def csr_rows(weight: np.ndarray) -> Pattern:
    n, k = weight.shape
    nz = weight != 0
    rowptr = np.concatenate([[0], np.cumsum(nz.sum(1))]).astype(np.int32)
    rows, cols = np.nonzero(nz)
    vals, idx = _nonempty(weight[rows, cols].astype(np.float32), cols.astype(index_dtype(k)))
    return Pattern(
        r=1, c=1, nb=n, n=n, k=k,
        arrays=[("vals", vals.shape, "float32"), ("idx", idx.shape, str(idx.dtype)), ("rowptr", rowptr.shape, "int32")],
        consts=(vals, idx, rowptr),
        start=lambda ib: f"rowptr[{ib}]", count=lambda ib: f"rowptr[{ib} + 1] - rowptr[{ib}]",
        col=lambda j, e, ib: _cast(f"idx[{j}]"), w=lambda j, rr, cc: f"vals[{j}]",
        entries=float(rowptr[-1]) / max(n, 1), info=dict(format="csr", nnz=int(rowptr[-1])))


def csr_panels(weight: np.ndarray, tk: int) -> Pattern:
    n, k = weight.shape
    panels = -(-k // tk)
    rows, cols = np.nonzero(weight)
    p = cols // tk
    order = np.lexsort((cols, rows, p))
    rows, cols, p = rows[order], cols[order], p[order]
    counts = np.bincount(p * n + rows, minlength=panels * n)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    vals, idx = _nonempty(weight[rows, cols].astype(np.float32), (cols - p * tk).astype("uint16"))
    return Pattern(
        r=1, c=1, nb=n, n=n, k=k, tk=tk,
        arrays=[("vals", vals.shape, "float32"), ("idx", idx.shape, "uint16"), ("ptr", ptr.shape, "int32")],
        consts=(vals, idx, ptr),
        start=lambda ib, pp: f"ptr[{pp} * {n} + {ib}]",
        count=lambda ib, pp: f"ptr[{pp} * {n} + {ib} + 1] - ptr[{pp} * {n} + {ib}]",
        col=lambda j, e, ib, pp: _cast(f"idx[{j}]"), w=lambda j, rr, cc: f"vals[{j}]",
        entries=float(ptr[-1]) / max(n, 1), info=dict(format="csr-panels", nnz=int(ptr[-1])))


# ------------------------------------------------------------------------------------------------------- BSR


def _blocks(weight: np.ndarray, r: int, c: int):
    n, k = weight.shape
    nb, kb = -(-n // r), -(-k // c)
    wp = np.zeros((nb * r, kb * c), np.float32)
    wp[:n, :k] = weight
    blocks = wp.reshape(nb, r, kb, c).transpose(0, 2, 3, 1)  # [nb, kb, c, r]
    mask = np.any(blocks != 0, axis=(2, 3))
    return nb, kb, blocks, mask


def bsr_rows(weight: np.ndarray, r: int, c: int) -> Pattern:
    n, k = weight.shape
    nb, kb, blocks, mask = _blocks(weight, r, c)
    bptr = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    ib, jb = np.nonzero(mask)
    data, bidx = _nonempty(blocks[ib, jb].astype(np.float32), jb.astype(index_dtype(kb)))
    return Pattern(
        r=r, c=c, nb=nb, n=n, k=k,
        arrays=[("data", data.shape, "float32"), ("bidx", bidx.shape, str(bidx.dtype)), ("bptr", bptr.shape, "int32")],
        consts=(data, bidx, bptr),
        start=lambda i: f"bptr[{i}]", count=lambda i: f"bptr[{i} + 1] - bptr[{i}]",
        col=lambda j, e, i: f"{_cast(f'bidx[{j}]')} * {c}", w=lambda j, rr, cc: f"data[{j}, {cc}, {rr}]",
        entries=float(bptr[-1]) * c / max(nb, 1),
        info=dict(format="bsr", block=(r, c), nnzb=int(bptr[-1])))


def bsr_panels(weight: np.ndarray, r: int, c: int, tk: int) -> Pattern:
    if tk % c:
        raise ValueError(f"panel width {tk} must be a multiple of the block columns {c}")
    n, k = weight.shape
    nb, kb, blocks, mask = _blocks(weight, r, c)
    panels = -(-(kb * c) // tk)
    bpp = tk // c  # block columns per panel
    ib, jb = np.nonzero(mask)
    p = jb // bpp
    order = np.lexsort((jb, ib, p))
    ib, jb, p = ib[order], jb[order], p[order]
    counts = np.bincount(p * nb + ib, minlength=panels * nb)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    data, lb = _nonempty(blocks[ib, jb].astype(np.float32), (jb - p * bpp).astype("uint16"))
    return Pattern(
        r=r, c=c, nb=nb, n=n, k=k, tk=tk,
        arrays=[("data", data.shape, "float32"), ("bidx", lb.shape, "uint16"), ("ptr", ptr.shape, "int32")],
        consts=(data, lb, ptr),
        start=lambda i, pp: f"ptr[{pp} * {nb} + {i}]",
        count=lambda i, pp: f"ptr[{pp} * {nb} + {i} + 1] - ptr[{pp} * {nb} + {i}]",
        col=lambda j, e, i, pp: f"{_cast(f'bidx[{j}]')} * {c}", w=lambda j, rr, cc: f"data[{j}, {cc}, {rr}]",
        entries=float(ptr[-1]) * c / max(nb, 1),
        info=dict(format="bsr-panels", block=(r, c), nnzb=int(ptr[-1])))


# ------------------------------------------------------------------------------------------------------- N:M


def nm_rows(weight: np.ndarray, n: int, group: int, tk: int | None = None) -> Pattern:
    """N:M walk; with ``tk`` (a multiple of ``group``) a panel pattern over the same arrays."""
    rows, k = weight.shape
    vals, pos = nm_pack(weight, n, group)
    J = vals.shape[1]  # entries per row
    g = J // n
    vflat, pflat = vals.reshape(-1), pos.reshape(-1)
    if not vflat.size:
        vflat, pflat = np.zeros(1, np.float32), np.zeros(1, np.uint8)
    arrays = [("vals", vflat.shape, "float32"), ("pos", pflat.shape, "uint8")]
    col = lambda j, e, *_: f'{e} // {n} * {group} + T.Cast("int32", pos[{j}])'  # noqa: E731
    w = lambda j, rr, cc: f"vals[{j}]"  # noqa: E731
    info = dict(format=f"nm{n}:{group}", nnz=int(np.count_nonzero(weight)), stored=int(vals.size))
    if tk is None:
        return Pattern(r=1, c=1, nb=rows, n=rows, k=k, arrays=arrays, consts=(vflat, pflat),
                       start=lambda i: f"{i} * {J}", count=lambda i: str(J), col=col, w=w, entries=float(J),
                       info=info)
    if tk % group:
        raise ValueError(f"panel width {tk} must be a multiple of the group {group}")
    gp = tk // group  # groups per panel
    return Pattern(
        r=1, c=1, nb=rows, n=rows, k=k, tk=tk, arrays=arrays, consts=(vflat, pflat),
        start=lambda i, pp: f"{i} * {J} + {pp} * {gp * n}",
        count=lambda i, pp: f"(T.min({pp} * {gp} + {gp}, {g}) - {pp} * {gp}) * {n}",
        col=col, w=w, entries=float(J), info=info)
