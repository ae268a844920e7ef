"""Unstructured sparsity (CSR-like): every nonzero stored with its flat position.

Encoding: ``values [nnz]`` (row-major nonzeros), ``indices [nnz]`` int32 flat ``r*K + c``, ``dims`` int64
``[N, K]``. Packings (float32 values, int64 coordinates): :func:`row_entries` (CSR rows) and, via
:meth:`Form.entries`, the entries of every form.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .base import Encoded, Form, Option, form_of, pointers, register
from .onnx_body import body_prefix

NAME = "csr"


class Csr(Form):
    name = NAME

    def encode(self, weight, *, block=None, nm=None) -> Encoded:
        n_out, k = weight.shape
        flat = np.flatnonzero(weight.reshape(-1))
        return Encoded(NAME, weight.reshape(-1)[flat].copy(), flat.astype(np.int32), np.array([n_out, k], np.int64))

    def decode(self, enc: Encoded) -> np.ndarray:
        n_out, k = enc.shape
        dense = np.zeros(n_out * k, enc.values.dtype)
        dense[enc.indices.astype(np.int64)] = enc.values
        return dense.reshape(n_out, k)

    def entries(self, enc: Encoded):
        k = max(enc.shape[1], 1)
        flat, vals = enc.indices.astype(np.int64), np.asarray(enc.values, np.float32)
        keep = vals != 0
        flat, vals = flat[keep], vals[keep]
        order = np.argsort(flat, kind="stable")
        flat, vals = flat[order], vals[order]
        return flat // k, flat % k, vals

    def weight_body(self, b, values, indices, dims):
        i64 = ir.DataType.INT64.value
        nk, _ = body_prefix(b, dims)
        zeros = b.op("CastLike", b.op("ConstantOfShape", b.op("ReduceProd", nk, keepdims=1)), values)
        flat = b.op("ScatterND", zeros, b.op("Unsqueeze", b.op("Cast", indices, to=i64), b.const(np.array([1]))),
                    values)
        return b.op("Reshape", flat, nk)

    def options(self, matrix: np.ndarray, facts=None) -> list[Option]:
        """One option; stored fraction = element density (the ``density`` fact)."""
        if facts and "density" in facts and matrix.size:
            density = float(facts["density"])
        else:
            density = float(np.count_nonzero(matrix)) / matrix.size if matrix.size else 1.0
        return [Option(NAME, density, NAME, NAME)]

    def option(self, variant_key: str) -> Option | None:
        return Option(NAME, 0.0, NAME, NAME) if variant_key == NAME else None

    def random_mask(self, n, k, density, option, rng) -> np.ndarray:
        return rng.random((n, k)) < density


def row_entries(enc: Encoded, form: Form | None = None):
    """CSR rows of any encoded operand: ``(vals [nnz] float32, cols [nnz] int64, rowptr [N+1] int32)``."""
    rows, cols, vals = (form or form_of(enc)).entries(enc)
    return vals, cols, pointers(rows, enc.shape[0])


FORM = register(Csr())
