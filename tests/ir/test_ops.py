"""ai.sparseforge ops: exact encodings, NumPy references, and ONNX function bodies that ONNX Runtime runs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from sparseforge.ir import keys, ops
from sparseforge.ir.conv import ConvSpec
from sparseforge.runtime.compare import session


def sparse_weight(shape, density, seed=0, block=None, nm=None):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    if nm is not None:
        n, m = nm
        groups = -(-shape[1] // m)
        pad = np.zeros((shape[0], groups * m), np.float32)
        pad[:, : shape[1]] = w
        g = pad.reshape(shape[0], groups, m)
        order = np.argsort(rng.random(g.shape), axis=2)
        mask = np.zeros_like(g, bool)
        np.put_along_axis(mask, order[:, :, :n], True, axis=2)
        return (g * mask).reshape(shape[0], -1)[:, : shape[1]].copy()
    if block is not None:
        br, bc = block
        nb, kb = -(-shape[0] // br), -(-shape[1] // bc)
        keep = np.repeat(np.repeat(rng.random((nb, kb)) < density, br, 0), bc, 1)[: shape[0], : shape[1]]
        return w * keep
    return w * (rng.random(shape) < density)


CASES = [
    ("csr", {}, (13, 21), 0.2),
    ("csr", {}, (5, 7), 0.0),  # all zero
    ("csr", {}, (6, 9), 1.0),  # fully dense
    ("bsr", {"block": (4, 1)}, (14, 9), 0.3),  # rows do not divide the block
    ("bsr", {"block": (1, 4)}, (7, 10), 0.3),
    ("bsr", {"block": (4, 4)}, (16, 16), 1.0),
    ("bsr", {"block": (16, 16)}, (20, 33), 0.5),
    ("nm", {"nm": (2, 4)}, (8, 10), None),  # K not a multiple of M
    ("nm", {"nm": (1, 4)}, (3, 16), None),
    ("nm", {"nm": (4, 8)}, (5, 24), None),
]


@pytest.mark.parametrize("fmt,params,shape,density", CASES)
def test_encode_decode_is_exact(fmt, params, shape, density) -> None:
    w = sparse_weight(shape, density if density is not None else 1.0, block=params.get("block"),
                      nm=params.get("nm"))
    enc = ops.encode(w, fmt, **params)
    np.testing.assert_array_equal(ops.decode(enc.values, enc.indices, enc.dims, fmt), w)
    if fmt == "nm":
        assert enc.indices.dtype == np.uint8
    else:
        assert enc.indices.dtype == np.int32


def test_nm_encoding_refuses_non_compliant_weights() -> None:
    with pytest.raises(ValueError, match="2:4"):
        ops.encode(np.ones((2, 8), np.float32), "nm", nm=(2, 4))


def _single_op_model(op: str, x_shape, enc: ops.Encoded, bias: np.ndarray, attributes=()) -> ir.Model:
    x = ir.Value(name="X", shape=ir.Shape(x_shape), type=ir.TensorType(ir.DataType.FLOAT))
    inits = []
    for name, array in (("values", enc.values), ("indices", enc.indices), ("dims", enc.dims), ("bias", bias)):
        inits.append(ir.Value(name=name, const_value=ir.tensor(array, name=name)))
    node = ir.Node(keys.DOMAIN, op, [x, *inits], list(attributes), name="sparse")
    node.outputs[0].name = "Y"
    graph = ir.Graph([x], [node.outputs[0]], nodes=[node], initializers=inits, opset_imports={"": 18})
    model = ir.Model(graph, ir_version=9)
    ops.ensure_functions(model)
    return model


@pytest.mark.parametrize("fmt,params,shape,density", CASES)
@pytest.mark.parametrize("kind", ["matmul", "conv1x1"])
def test_function_bodies_match_the_reference_in_onnxruntime(fmt, params, shape, density, kind) -> None:
    w = sparse_weight(shape, density if density is not None else 1.0, seed=3, block=params.get("block"),
                      nm=params.get("nm"))
    enc = ops.encode(w, fmt, **params)
    bias = np.random.default_rng(1).standard_normal(shape[0]).astype(np.float32)
    op = ops.op_type(fmt, kind)
    x_shape = [2, 3, shape[1]] if kind == "matmul" else [2, shape[1], 3, 4]
    x = np.random.default_rng(2).standard_normal(x_shape).astype(np.float32)
    expected = ops.reference(op, x, enc.values, enc.indices, enc.dims, bias)
    if kind == "matmul":
        np.testing.assert_allclose(expected, x @ w.T + bias, rtol=1e-5, atol=1e-5)
    model = _single_op_model(op, x_shape, enc, bias)
    (y,) = session(model).run(None, {"X": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


CONV_SPECS = [
    ConvSpec((1, 4, 7, 6), 6, (3, 3), (1, 1), (1, 1, 1, 1)),
    ConvSpec((2, 6, 9, 9), 4, (3, 2), (2, 1), (1, 0, 0, 1), (1, 2), 2),
    ConvSpec((1, 3, 11, 11), 8, (5, 5), (2, 2), (2, 2, 2, 2)),
]


@pytest.mark.parametrize("fmt,params", [("csr", {}), ("bsr", {"block": (2, 1)}), ("nm", {"nm": (2, 4)})])
@pytest.mark.parametrize("spec", CONV_SPECS, ids=lambda s: s.key())
def test_conv_function_bodies_match_the_reference_in_onnxruntime(fmt, params, spec) -> None:
    """``*Conv`` ops: the function body (Conv with the node's attributes through attribute references) equals
    the NumPy reference, which equals a plain dense Conv."""
    from sparseforge.ir import conv

    w = sparse_weight((spec.cout, spec.reduction), 0.3, seed=4, block=params.get("block"), nm=params.get("nm"))
    enc = ops.encode(w, fmt, **params)
    bias = np.random.default_rng(1).standard_normal(spec.cout).astype(np.float32)
    op = ops.op_type(fmt, "conv")
    x = np.random.default_rng(2).standard_normal(spec.x_shape).astype(np.float32)
    expected = ops.reference(op, x, enc.values, enc.indices, enc.dims, bias, spec=spec)
    model = _single_op_model(op, list(spec.x_shape), enc, bias, attributes=spec.attributes())
    model.graph.outputs[0].shape = ir.Shape(spec.out_shape)
    (y,) = session(model).run(None, {"X": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    dense = make_conv_model(w.reshape(spec.cout, spec.cin_per_group, *spec.kernel), bias, spec)
    (y_dense,) = session(dense).run(None, {"X": x})
    np.testing.assert_allclose(y_dense, expected, rtol=1e-5, atol=1e-5)
    assert conv.ConvSpec.parse(spec.key()) == spec


def make_conv_model(w4: np.ndarray, bias: np.ndarray, spec: ConvSpec) -> ir.Model:
    x = ir.Value(name="X", shape=ir.Shape(spec.x_shape), type=ir.TensorType(ir.DataType.FLOAT))
    inits = [ir.Value(name=n, const_value=ir.tensor(a, name=n)) for n, a in (("W", w4), ("B", bias))]
    node = ir.Node("", "Conv", [x, *inits], spec.attributes(), name="conv")
    node.outputs[0].name = "Y"
    graph = ir.Graph([x], [node.outputs[0]], nodes=[node], initializers=inits, opset_imports={"": 18}, name="g")
    return ir.Model(graph, ir_version=9)
