"""Weight packing for the CUDA kernels: the sparsity pattern as index arrays, plus how a kernel walks them.

Formats (values float32; column indices uint16 when they fit, else int32; pointers int32):

* rows (small-M kernel, :mod:`._rows`): CSR ``(vals[nnz], idx[nnz], rowptr[N+1])``; BSR r x c
  ``(data[nnzb, c, r], bidx[nnzb], bptr[NB+1])`` (block j's rows contiguous for each column); N:M
  ``(vals[N, G*n], pos[N, G*n])`` (position of each kept weight inside its group, uint8).
* panels (large-M kernel, :mod:`._panel`): the same values re-ordered K-panel-major (panel p covers columns
  [p*tk, (p+1)*tk)), with panel-local column indices and ``ptr[P*NB+1]`` indexed by ``p*NB + block_row``;
  N:M needs no re-ordering (a fixed number of entries per row and panel).

A pattern object describes the walk with TVMScript expression callbacks; W is padded logically to whole blocks
and groups (zeros), never physically beyond the stored blocks. Empty weights keep 1-element buffers. Every
pattern is built from an encoded operand (:class:`~sparseforge.ir.forms.Encoded`) through the forms' packings
(:mod:`sparseforge.ir.forms`), the same ones the CPU kernels use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sparseforge.ir import forms
from sparseforge.ir.forms import Encoded, index_dtype, pointers
from sparseforge.ir.forms.bsr import block_entries

from ..kernels.nm import nm_operand


def _operand(weight, fmt: str, **params) -> Encoded:
    """An encoded operand as is; a dense ``[N, K]`` matrix encoded in ``fmt`` (tests and tools pass dense)."""
    if isinstance(weight, Encoded):
        return weight
    return forms.encode(np.asarray(weight, np.float32), fmt, **params)


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


def csr_rows(weight) -> Pattern:
    """Row walk over the nonzeros of an encoded operand of any form (or a dense matrix)."""
    enc = _operand(weight, "csr")
    n, k = enc.shape
    rows, cols, vals = forms.get(enc.fmt).entries(enc)
    rowptr = pointers(rows, n)
    vals, idx = _nonempty(vals, cols.astype(index_dtype(k)))
    return Pattern(
        r=1, c=1, nb=n, n=n, k=k,
        arrays=[("vals", vals.shape, "float32"), ("idx", idx.shape, str(idx.dtype)), ("rowptr", rowptr.shape, "int32")],
        consts=(vals, idx, rowptr),
        start=lambda ib: f"rowptr[{ib}]", count=lambda ib: f"rowptr[{ib} + 1] - rowptr[{ib}]",
        col=lambda j, e, ib: _cast(f"idx[{j}]"), w=lambda j, rr, cc: f"vals[{j}]",
        entries=float(rowptr[-1]) / max(n, 1), info=dict(format="csr", nnz=int(rowptr[-1])))


def csr_panels(weight, tk: int) -> Pattern:
    """Panel walk (panels of ``tk`` columns) over the nonzeros of an encoded operand of any form (or dense)."""
    enc = _operand(weight, "csr")
    n, k = enc.shape
    panels = -(-k // tk)
    rows, cols, vals = forms.get(enc.fmt).entries(enc)
    p = cols // tk
    order = np.lexsort((cols, rows, p))
    rows, cols, p, vals = rows[order], cols[order], p[order], vals[order]
    counts = np.bincount(p * n + rows, minlength=panels * n)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    vals, idx = _nonempty(vals, (cols - p * tk).astype("uint16"))
    return Pattern(
        r=1, c=1, nb=n, n=n, k=k, tk=tk,
        arrays=[("vals", vals.shape, "float32"), ("idx", idx.shape, "uint16"), ("ptr", ptr.shape, "int32")],
        consts=(vals, idx, ptr),
        start=lambda ib, pp: f"ptr[{pp} * {n} + {ib}]",
        count=lambda ib, pp: f"ptr[{pp} * {n} + {ib} + 1] - ptr[{pp} * {n} + {ib}]",
        col=lambda j, e, ib, pp: _cast(f"idx[{j}]"), w=lambda j, rr, cc: f"vals[{j}]",
        entries=float(ptr[-1]) / max(n, 1), info=dict(format="csr-panels", nnz=int(ptr[-1])))


# ------------------------------------------------------------------------------------------------------- BSR


def _blocks(enc: Encoded, r: int, c: int):
    """(nb, kb, data [nnzb, c, r] float32, brow, bcol): the r x c blocks, each block column-major."""
    n, k = enc.shape
    data, brow, bcol = block_entries(enc, r, c)
    return -(-n // r), -(-k // c), np.ascontiguousarray(data.transpose(0, 2, 1)), brow, bcol


def bsr_rows(weight, r: int, c: int) -> Pattern:
    """Block-row walk over the r x c blocks of an encoded operand of any form (or dense)."""
    enc = _operand(weight, "bsr", block=(r, c))
    n, k = enc.shape
    nb, kb, data, ib, jb = _blocks(enc, r, c)
    bptr = pointers(ib, nb)
    data, bidx = _nonempty(data, jb.astype(index_dtype(kb)))
    return Pattern(
        r=r, c=c, nb=nb, n=n, k=k,
        arrays=[("data", data.shape, "float32"), ("bidx", bidx.shape, str(bidx.dtype)), ("bptr", bptr.shape, "int32")],
        consts=(data, bidx, bptr),
        start=lambda i: f"bptr[{i}]", count=lambda i: f"bptr[{i} + 1] - bptr[{i}]",
        col=lambda j, e, i: f"{_cast(f'bidx[{j}]')} * {c}", w=lambda j, rr, cc: f"data[{j}, {cc}, {rr}]",
        entries=float(bptr[-1]) * c / max(nb, 1),
        info=dict(format="bsr", block=(r, c), nnzb=int(bptr[-1])))


def bsr_panels(weight, r: int, c: int, tk: int) -> Pattern:
    """Panel walk over the r x c blocks of an encoded operand of any form (or dense)."""
    if tk % c:
        raise ValueError(f"panel width {tk} must be a multiple of the block columns {c}")
    enc = _operand(weight, "bsr", block=(r, c))
    n, k = enc.shape
    nb, kb, data, ib, jb = _blocks(enc, r, c)
    panels = -(-(kb * c) // tk)
    bpp = tk // c  # block columns per panel
    p = jb // bpp
    order = np.lexsort((jb, ib, p))
    ib, jb, p, data = ib[order], jb[order], p[order], data[order]
    counts = np.bincount(p * nb + ib, minlength=panels * nb)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    data, lb = _nonempty(data, (jb - p * bpp).astype("uint16"))
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


def nm_rows(weight, n: int | None = None, group: int | None = None, tk: int | None = None) -> Pattern:
    """N:M walk of an N:M operand (its own n:group) or of a dense matrix (``n``:``group``, validated); with ``tk``
    (a multiple of the group) a panel pattern over the same arrays."""
    enc = weight if isinstance(weight, Encoded) else nm_operand(np.asarray(weight, np.float32), n, group)
    rows, k = enc.shape
    n, group = enc.nm
    vals, pos = forms.nm.groups(enc)
    J = vals.shape[1]  # entries per row
    g = J // n
    vflat, pflat = vals.reshape(-1), pos.reshape(-1)
    if not vflat.size:
        vflat, pflat = np.zeros(1, np.float32), np.zeros(1, np.uint8)
    arrays = [("vals", vflat.shape, "float32"), ("pos", pflat.shape, "uint8")]
    col = lambda j, e, *_: f'{e} // {n} * {group} + T.Cast("int32", pos[{j}])'  # noqa: E731
    w = lambda j, rr, cc: f"vals[{j}]"  # noqa: E731
    info = dict(format=f"nm{n}:{group}", nnz=enc.nnz, stored=int(vals.size))
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
