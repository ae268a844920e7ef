"""Block-sparse rows (BSR): the weight cut into ``r x c`` blocks (edges zero-padded), nonzero blocks stored.

Encoding: ``values [nnzb, r, c]`` (nonzero blocks), ``indices [nnzb]`` int32 flat block index ``rb*KB + cb``
(ascending), ``dims`` int64 ``[N, K, NB, KB]``; ONNX attribute ``block = [r, c]``. Packings:
:func:`block_entries` (blocks of any shape from any encoded operand) and :func:`bsr_pack` (the CPU/CUDA block-row
layout ``data [nnzb, r, c] float32, bidx [nnzb] uint16|int32, bptr [NB+1] int32``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .base import Encoded, Form, Option, form_of, index_dtype, pointers, register
from .onnx_body import body_prefix

NAME = "bsr"

#: Block shapes (rows x cols of the ``(output, reduction)`` weight) sparseforge analyses and builds kernels for,
#: in the order a decision tries them.
BLOCK_SHAPES: tuple[tuple[int, int], ...] = ((4, 1), (8, 1), (16, 1), (1, 4), (1, 8), (4, 4), (16, 16))


def nonzero_blocks(matrix: np.ndarray, br: int, bc: int) -> np.ndarray:
    """Boolean ``[ceil(rows/br), ceil(cols/bc)]`` map of blocks holding any nonzero (edges zero-padded)."""
    rows, cols = matrix.shape
    rb, cb = -(-rows // br), -(-cols // bc)
    nz = matrix != 0
    if rb * br != rows or cb * bc != cols:
        nz = np.pad(nz, ((0, rb * br - rows), (0, cb * bc - cols)))
    return nz.reshape(rb, br, cb, bc).any(axis=(1, 3))


def label(block: tuple[int, int]) -> str:
    return f"bsr {block[0]}x{block[1]}"


def variant_key(block: tuple[int, int]) -> str:
    return f"bsr{block[0]}x{block[1]}"


class Bsr(Form):
    name = NAME

    def encode(self, weight, *, block=None, nm=None) -> Encoded:
        br, bc = block or (4, 1)
        n_out, k = weight.shape
        nb, kb = -(-n_out // br), -(-k // bc)
        padded = np.zeros((nb * br, kb * bc), weight.dtype)
        padded[:n_out, :k] = weight
        blocks = padded.reshape(nb, br, kb, bc).transpose(0, 2, 1, 3).reshape(nb * kb, br, bc)
        keep = np.flatnonzero(blocks.reshape(nb * kb, -1).any(axis=1))
        return Encoded(NAME, blocks[keep].copy(), keep.astype(np.int32), np.array([n_out, k, nb, kb], np.int64),
                       block=(br, bc))

    def wrap(self, values, indices, dims) -> Encoded:
        return Encoded(NAME, values, indices, np.asarray(dims, np.int64),
                       block=(int(values.shape[1]), int(values.shape[2])))

    def decode(self, enc: Encoded) -> np.ndarray:
        n_out, k = enc.shape
        nb, kb = int(enc.dims[2]), int(enc.dims[3])
        br, bc = enc.values.shape[1], enc.values.shape[2]
        blocks = np.zeros((nb * kb, br, bc), enc.values.dtype)
        blocks[enc.indices.astype(np.int64)] = enc.values
        dense = blocks.reshape(nb, kb, br, bc).transpose(0, 2, 1, 3).reshape(nb * br, kb * bc)
        return dense[:n_out, :k].copy()

    def entries(self, enc: Encoded):
        n_out, k = enc.shape
        kb = int(enc.dims[3])
        br, bc = enc.values.shape[1], enc.values.shape[2]
        vals = np.asarray(enc.values, np.float32)
        j, rr, cc = np.nonzero(vals)
        flat = enc.indices.astype(np.int64)[j]
        rows, cols = flat // kb * br + rr, flat % kb * bc + cc
        inside = (rows < n_out) & (cols < k)
        rows, cols, v = rows[inside], cols[inside], vals[j, rr, cc][inside]
        order = np.argsort(rows * max(k, 1) + cols, kind="stable")
        return rows[order], cols[order], v[order]

    def weight_body(self, b, values, indices, dims):
        i64 = ir.DataType.INT64.value
        nk, zero = body_prefix(b, dims)
        nb_kb = b.op("Slice", dims, b.const(np.array([2], np.int64)), b.const(np.array([4], np.int64)))
        block_shape = b.op("Slice", b.op("Shape", values), b.const(np.array([1], np.int64)),
                           b.const(np.array([3], np.int64)))
        total = b.op("ReduceProd", nb_kb, keepdims=1)
        zeros_shape = b.op("Concat", total, block_shape, axis=0)
        zeros = b.op("CastLike", b.op("ConstantOfShape", zeros_shape), values)
        blocks = b.op("ScatterND", zeros, b.op("Unsqueeze", b.op("Cast", indices, to=i64), b.const(np.array([1]))),
                      values)
        grid = b.op("Reshape", blocks, b.op("Concat", nb_kb, block_shape, axis=0))  # [NB, KB, R, C]
        rows = b.op("Mul", b.op("Slice", nb_kb, zero, b.const(np.array([1], np.int64))),
                    b.op("Slice", block_shape, zero, b.const(np.array([1], np.int64))))
        cols = b.op("Mul", b.op("Slice", nb_kb, b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64))),
                    b.op("Slice", block_shape, b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64))))
        dense = b.op("Reshape", b.op("Transpose", grid, perm=[0, 2, 1, 3]), b.op("Concat", rows, cols, axis=0))
        return b.op("Slice", dense, b.const(np.array([0, 0], np.int64)), nk)

    def options(self, matrix: np.ndarray, facts=None) -> list[Option]:
        """One option per block shape; stored fraction = block density (from the ``blocks`` fact's zero-block
        fraction when given)."""
        zero = (facts or {}).get("blocks") or {}
        rows, cols = matrix.shape
        options = []
        for block in BLOCK_SHAPES:
            total = -(-rows // block[0]) * -(-cols // block[1])
            key = f"{block[0]}x{block[1]}"
            if key in zero and total:
                nnzb = int(round((1.0 - float(zero[key])) * total))
            else:
                nnzb = int(np.count_nonzero(nonzero_blocks(matrix, *block)))
            options.append(Option(NAME, nnzb / total if total else 0.0, label(block), variant_key(block),
                                  block=block, nnz_blocks=nnzb))
        return options

    def option(self, key: str) -> Option | None:
        if not key.startswith(NAME):
            return None
        block = tuple(int(v) for v in key[len(NAME):].split("x"))
        return Option(NAME, 0.0, label(block), key, block=block)

    def stored_fraction(self, n, k, density, *, block=None, nm=None, nnz_blocks=None) -> float:
        """Block density: ``nnz_blocks`` of all ``block`` blocks (estimated as ``density`` of them if unknown)."""
        if block is None:
            return density
        blocks = -(-n // block[0]) * -(-k // block[1])
        return (nnz_blocks if nnz_blocks is not None else density * blocks) / blocks

    def random_mask(self, n, k, density, option, rng) -> np.ndarray:
        br, bc = option.block
        nb, kb = -(-n // br), -(-k // bc)
        mask = rng.random((nb, kb)) < density
        mask[np.arange(nb), rng.integers(0, kb, nb)] |= density > 0  # no empty block rows at all densities
        return np.repeat(np.repeat(mask, br, 0), bc, 1)[:n, :k]


FORM = register(Bsr())


def block_entries(enc: Encoded, r: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``r x c`` blocks holding any nonzero of any encoded operand: ``(data [nnzb, r, c] float32, brow int64,
    bcol int64)`` sorted by (block row, block column); the same blocks as cutting the dense weight."""
    if enc.fmt == NAME and enc.values.shape[2] == c and enc.values.shape[1] % r == 0:
        # the stored blocks, or each split into R / r blocks of r rows (values kept bit for bit, signed zeros too)
        split = enc.values.shape[1] // r
        kb = int(enc.dims[3])
        flat = enc.indices.astype(np.int64)
        data = np.asarray(enc.values, np.float32).reshape(-1, r, c)
        brow = (flat // kb * split)[:, None] + np.arange(split)[None, :]
        bcol = np.repeat(flat % kb, split)
        brow = brow.reshape(-1)
        keep = (data != 0).any(axis=(1, 2))
        data, brow, bcol = data[keep], brow[keep], bcol[keep]
        order = np.argsort(brow * kb + bcol, kind="stable")
        return data[order], brow[order], bcol[order]
    k = enc.shape[1]
    kb = -(-k // c)
    rows, cols, vals = form_of(enc).entries(enc)
    key = rows // r * kb + cols // c
    uniq, slot = np.unique(key, return_inverse=True)
    data = np.zeros((len(uniq), r, c), np.float32)
    data[slot, rows % r, cols % c] = vals
    return data, uniq // kb, uniq % kb


def bsr_pack(enc: Encoded, r: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-row layout ``(data [nnzb, r, c] float32, bidx [nnzb] (uint16 if K/c <= 65536 else int32),
    bptr [NB+1] int32)``; an empty weight keeps one zero block (buffers are never empty)."""
    n, k = enc.shape
    nb, kb = -(-n // r), -(-k // c)
    data, brow, bcol = block_entries(enc, r, c)
    bptr = pointers(brow, nb)
    bidx = bcol.astype(index_dtype(kb))
    if not len(data):
        data, bidx = np.zeros((1, r, c), np.float32), np.zeros(1, bidx.dtype)
    return data, bidx, bptr
