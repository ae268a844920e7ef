"""N:M structured sparsity: at most n nonzeros in every m consecutive reduction elements (K zero-padded to whole
groups).

Encoding: ``values [N, G*n]`` kept values, ``indices [N, G*n]`` uint8 offset inside the group (nonzeros first in
order, then zero positions as padding), ``dims`` int64 ``[N, K, G, m]``; ONNX attribute ``nm = [n, m]``.
Packing: :func:`groups` (``vals [N, G*n] float32, pos [N, G*n] uint8``, padding entries at position 0).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .base import Encoded, Form, Option, register
from .onnx_body import body_prefix

NAME = "nm"

#: N:M patterns sparseforge analyses and builds kernels for, in the order a decision tries them.
PATTERNS: tuple[tuple[int, int], ...] = ((1, 4), (2, 8), (2, 4), (4, 8))


def label(nm: tuple[int, int]) -> str:
    return f"nm {nm[0]}:{nm[1]}"


def variant_key(nm: tuple[int, int]) -> str:
    return f"nm{nm[0]}:{nm[1]}"


def compliance(matrix: np.ndarray, n: int, m: int) -> float:
    """Fraction of groups of ``m`` consecutive reduction elements (per output row; K zero-padded) holding at most
    ``n`` nonzeros (1.0 for an empty matrix)."""
    rows, cols = matrix.shape
    if rows == 0 or cols == 0:
        return 1.0
    groups = -(-cols // m)
    nz = matrix != 0
    if groups * m != cols:
        nz = np.pad(nz, ((0, 0), (0, groups * m - cols)))
    counts = nz.reshape(rows, groups, m).sum(axis=2)
    return float(np.count_nonzero(counts <= n)) / counts.size


def complies(matrix: np.ndarray, n: int, m: int) -> bool:
    """At most ``n`` nonzeros in every group of ``m`` along the reduction axis (K zero-padded)."""
    return compliance(matrix, n, m) >= 1.0


class Nm(Form):
    name = NAME

    def encode(self, weight, *, block=None, nm=None) -> Encoded:
        n, m = nm or (2, 4)
        n_out, k = weight.shape
        groups = -(-k // m)
        padded = np.zeros((n_out, groups * m), weight.dtype)
        padded[:, :k] = weight
        grouped = padded.reshape(n_out, groups, m)
        if int((grouped != 0).sum(axis=2).max(initial=0)) > n:
            raise ValueError(f"weight is not {n}:{m} sparse along the reduction axis")
        # per group: nonzero positions first (in order), then zero positions as padding, take n
        order = np.argsort(grouped == 0, axis=2, kind="stable")[:, :, :n]
        values = np.take_along_axis(grouped, order, axis=2).reshape(n_out, groups * n)
        return Encoded(NAME, values.copy(), order.reshape(n_out, groups * n).astype(np.uint8),
                       np.array([n_out, k, groups, m], np.int64), nm=(n, m))

    def wrap(self, values, indices, dims) -> Encoded:
        dims = np.asarray(dims, np.int64)
        groups = max(int(dims[2]), 1)
        return Encoded(NAME, values, indices, dims, nm=(int(values.shape[1]) // groups, int(dims[3])))

    def decode(self, enc: Encoded) -> np.ndarray:
        n_out, k = enc.shape
        groups, m = int(enc.dims[2]), int(enc.dims[3])
        n = enc.values.shape[1] // groups
        cols = (np.arange(groups * n) // n * m)[None, :] + enc.indices.astype(np.int64)
        dense = np.zeros((n_out, groups * m), enc.values.dtype)
        np.put_along_axis(dense, cols, enc.values, axis=1)
        return dense[:, :k].copy()

    def entries(self, enc: Encoded):
        k = enc.shape[1]
        groups, m = int(enc.dims[2]), int(enc.dims[3])
        vals = np.asarray(enc.values, np.float32)
        n = vals.shape[1] // max(groups, 1)
        rows, j = np.nonzero(vals)
        cols = j // max(n, 1) * m + enc.indices[rows, j].astype(np.int64)
        inside = cols < k
        rows, cols, v = rows[inside], cols[inside], vals[rows, j][inside]
        order = np.argsort(rows * max(k, 1) + cols, kind="stable")
        return rows[order], cols[order], v[order]

    def weight_body(self, b, values, indices, dims):
        i64 = ir.DataType.INT64.value
        nk, zero = body_prefix(b, dims)
        n_rows = b.op("Slice", dims, zero, b.const(np.array([1], np.int64)))
        groups = b.op("Slice", dims, b.const(np.array([2], np.int64)), b.const(np.array([3], np.int64)))
        m = b.op("Slice", dims, b.const(np.array([3], np.int64)), b.const(np.array([4], np.int64)))
        width = b.op("Slice", b.op("Shape", values), b.const(np.array([1], np.int64)),
                     b.const(np.array([2], np.int64)))
        n = b.op("Div", width, groups)
        positions = b.op("Range", b.const(np.array(0, np.int64)), b.op("Squeeze", width, zero),
                         b.const(np.array(1, np.int64)))
        base = b.op("Mul", b.op("Div", positions, n), m)
        cols = b.op("Add", b.op("Cast", indices, to=i64), base)
        zeros_shape = b.op("Concat", n_rows, b.op("Mul", groups, m), axis=0)
        zeros = b.op("CastLike", b.op("ConstantOfShape", zeros_shape), values)
        dense = b.op("ScatterElements", zeros, cols, values, axis=1)
        return b.op("Slice", dense, b.const(np.array([0, 0], np.int64)), nk)

    def options(self, matrix: np.ndarray, facts=None) -> list[Option]:
        """Only the patterns ``matrix`` fully complies with (the ``nm`` fact's compliance == 1 when given)."""
        compliance = (facts or {}).get("nm") or {}

        def full(n: int, m: int) -> bool:
            key = f"{n}:{m}"
            return float(compliance[key]) >= 1.0 if key in compliance else complies(matrix, n, m)

        return [Option(NAME, n / m, label((n, m)), variant_key((n, m)), nm=(n, m)) for n, m in PATTERNS if full(n, m)]

    def option(self, key: str) -> Option | None:
        if not key.startswith(NAME):
            return None
        n, m = (int(v) for v in key[len(NAME):].split(":"))
        return Option(NAME, n / m, label((n, m)), key, nm=(n, m))

    fixed_stored = True

    def stored_fraction(self, n, k, density, *, block=None, nm=None, nnz_blocks=None) -> float:
        """n / m."""
        return nm[0] / nm[1] if nm is not None else density

    def random_mask(self, n, k, density, option, rng) -> np.ndarray:
        keep_n, m = option.nm
        groups = -(-k // m)
        scores = rng.random((n, groups, m))
        mask = np.zeros((n, groups, m), bool)
        np.put_along_axis(mask, np.argsort(scores, axis=2)[:, :, :keep_n], True, axis=2)
        return mask.reshape(n, groups * m)[:, :k]


FORM = register(Nm())


def groups(enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
    """Group layout ``(vals [N, G*n] float32, pos [N, G*n] uint8)`` of an N:M operand; padding entries (value 0)
    get position 0."""
    vals = np.asarray(enc.values, np.float32)
    return vals, np.where(vals != 0, enc.indices, 0).astype(np.uint8)
