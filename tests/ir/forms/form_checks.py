"""Checks every structure form must pass (imported by the per-form test modules)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir import forms, keys, ops
from sparseforge.runtime.compare import session


def structured(shape, density, *, seed=0, block=None, nm=None) -> np.ndarray:
    """A float32 weight with the given structure (signed zeros included, as masks of random normals give)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    if nm is not None:
        n, m = nm
        groups = -(-shape[1] // m)
        pad = np.zeros((shape[0], groups * m), np.float32)
        pad[:, :shape[1]] = w
        g = pad.reshape(shape[0], groups, m)
        mask = np.zeros_like(g, bool)
        np.put_along_axis(mask, np.argsort(rng.random(g.shape), axis=2)[:, :, :n], True, axis=2)
        mask.reshape(-1)[::3] = False  # some groups hold fewer than n
        return (g * mask).reshape(shape[0], -1)[:, :shape[1]].copy()
    if block is not None:
        br, bc = block
        nb, kb = -(-shape[0] // br), -(-shape[1] // bc)
        keep = np.repeat(np.repeat(rng.random((nb, kb)) < density, br, 0), bc, 1)[:shape[0], :shape[1]]
        return w * keep
    return w * (rng.random(shape) < density)


def check_roundtrip(w: np.ndarray, fmt: str, **params) -> forms.Encoded:
    enc = forms.encode(w, fmt, **params)
    assert enc.fmt == fmt
    back = forms.decode(enc.values, enc.indices, enc.dims, fmt)
    np.testing.assert_array_equal(back, w)
    wrapped = forms.wrap(fmt, enc.values, enc.indices, enc.dims)
    assert (wrapped.block, wrapped.nm) == (enc.block, enc.nm)
    rows, cols, vals = forms.get(fmt).entries(wrapped)
    r0, c0 = np.nonzero(w)
    np.testing.assert_array_equal(rows, r0)
    np.testing.assert_array_equal(cols, c0)
    np.testing.assert_array_equal(vals, w[r0, c0])
    assert enc.nnz == len(r0)
    return enc


def check_body_in_onnxruntime(w: np.ndarray, fmt: str, kind: str, **params) -> None:
    """The op's ONNX function (decompression body) in ONNX Runtime == the NumPy reference == the dense op."""
    enc = forms.encode(w, fmt, **params)
    n, k = w.shape
    bias = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    op = ops.op_type(fmt, kind)
    x_shape = [2, 3, k] if kind == "matmul" else [2, k, 3, 4]
    x = np.random.default_rng(2).standard_normal(x_shape).astype(np.float32)
    expected = ops.reference(op, x, enc.values, enc.indices, enc.dims, bias)
    dense = x @ w.T + bias if kind == "matmul" else np.einsum("nk,bkhw->bnhw", w, x) + bias.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(expected, dense, rtol=1e-5, atol=1e-5)
    xv = ir.Value(name="X", shape=ir.Shape(x_shape), type=ir.TensorType(ir.DataType.FLOAT))
    inits = [ir.Value(name=name, const_value=ir.tensor(array, name=name))
             for name, array in (("values", enc.values), ("indices", enc.indices), ("dims", enc.dims), ("bias", bias))]
    node = ir.Node(keys.DOMAIN, op, [xv, *inits], ops.attributes(enc), name="sparse")
    node.outputs[0].name = "Y"
    graph = ir.Graph([xv], [node.outputs[0]], nodes=[node], initializers=inits, opset_imports={"": 18})
    model = ir.Model(graph, ir_version=9)
    ops.ensure_functions(model)
    (y,) = session(model).run(None, {"X": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
