"""sparseforge's own ONNX operators (domain ``ai.sparseforge``): compressed weights that ONNX Runtime still runs.

Each op replaces a dense ``y = x @ W^T + bias`` (``W`` in the ``(output, reduction)`` view, ``[N, K]``) and stores
``W`` compressed. Every op has a NumPy reference (:func:`reference`) and a model-local ONNX function whose body
decompresses ``W`` with standard ops and applies it, so an exported model runs in any ONNX runtime; sparseforge's
codegen recognises the op by ``(domain, op_type)`` and emits a sparse kernel instead.

Inputs of every op: ``X, values, indices, dims, bias``.

===================  ==========================================  ==================================  ============
op                   values                                      indices                             dims (int64)
===================  ==========================================  ==================================  ============
``CsrMatMul``        ``[nnz]`` nonzeros, row-major               ``[nnz]`` int32 flat ``r*K + c``    ``[N, K]``
``BsrMatMul``        ``[nnzb, R, C]`` nonzero blocks             ``[nnzb]`` int32 flat block index   ``[N, K, NB, KB]``
                                                                 ``rb*KB + cb`` (edges zero-padded)
``NmMatMul``         ``[N, G*n]`` kept values                    ``[N, G*n]`` uint8 offset in group  ``[N, K, G, M]``
===================  ==========================================  ==================================  ============

``*Conv1x1`` variants take ``X[B, K, H, W]`` (NCHW) and give ``Y[B, N, H, W]``; the ``*MatMul`` variants take
``X[..., K]`` and give ``Y[..., N]``. ``bias`` is ``[N]`` (zeros when the layer had none). Exactness: decompression is
exact, so results match the dense op up to fp32 summation order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from sparseforge.ir.keys import DOMAIN, DOMAIN_VERSION

FORMATS = ("csr", "bsr", "nm")
_OP_TYPES = {("csr", "matmul"): "CsrMatMul", ("bsr", "matmul"): "BsrMatMul", ("nm", "matmul"): "NmMatMul",
             ("csr", "conv1x1"): "CsrConv1x1", ("bsr", "conv1x1"): "BsrConv1x1", ("nm", "conv1x1"): "NmConv1x1"}
OP_TYPES = frozenset(_OP_TYPES.values())


def op_type(fmt: str, kind: str) -> str:
    return _OP_TYPES[(fmt, kind)]


def op_format(op: str) -> tuple[str, str]:
    """``"BsrConv1x1"`` -> ``("bsr", "conv1x1")``."""
    for key, value in _OP_TYPES.items():
        if value == op:
            return key
    raise KeyError(op)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A weight ``[N, K]`` in one compressed format (see the module docstring)."""

    fmt: str
    values: np.ndarray
    indices: np.ndarray
    dims: np.ndarray
    block: tuple[int, int] | None = None
    nm: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.dims[0]), int(self.dims[1])


# ------------------------------------------------------------------------------------------ encodings


def encode(weight: np.ndarray, fmt: str, *, block: tuple[int, int] = (4, 1), nm: tuple[int, int] = (2, 4)
           ) -> Encoded:
    """Compress ``weight`` ``[N, K]``; exact (``decode(encode(w)) == w``)."""
    n_out, k = weight.shape
    if fmt == "csr":
        flat = np.flatnonzero(weight.reshape(-1))
        return Encoded("csr", weight.reshape(-1)[flat].copy(), flat.astype(np.int32),
                       np.array([n_out, k], np.int64))
    if fmt == "bsr":
        br, bc = block
        nb, kb = -(-n_out // br), -(-k // bc)
        padded = np.zeros((nb * br, kb * bc), weight.dtype)
        padded[:n_out, :k] = weight
        blocks = padded.reshape(nb, br, kb, bc).transpose(0, 2, 1, 3).reshape(nb * kb, br, bc)
        keep = np.flatnonzero(blocks.reshape(nb * kb, -1).any(axis=1))
        return Encoded("bsr", blocks[keep].copy(), keep.astype(np.int32), np.array([n_out, k, nb, kb], np.int64),
                       block=(br, bc))
    if fmt == "nm":
        n, m = nm
        groups = -(-k // m)
        padded = np.zeros((n_out, groups * m), weight.dtype)
        padded[:, :k] = weight
        grouped = padded.reshape(n_out, groups, m)
        if int((grouped != 0).sum(axis=2).max(initial=0)) > n:
            raise ValueError(f"weight is not {n}:{m} sparse along the reduction axis")
        # per group: nonzero positions first (in order), then zero positions as padding, take n
        order = np.argsort(grouped == 0, axis=2, kind="stable")[:, :, :n]
        values = np.take_along_axis(grouped, order, axis=2).reshape(n_out, groups * n)
        return Encoded("nm", values.copy(), order.reshape(n_out, groups * n).astype(np.uint8),
                       np.array([n_out, k, groups, m], np.int64), nm=(n, m))
    raise ValueError(f"unknown sparse format {fmt!r}")


def decode(values: np.ndarray, indices: np.ndarray, dims: np.ndarray, fmt: str) -> np.ndarray:
    """The dense ``[N, K]`` weight of an encoded operand (NumPy reference of the function bodies)."""
    n_out, k = int(dims[0]), int(dims[1])
    if fmt == "csr":
        dense = np.zeros(n_out * k, values.dtype)
        dense[indices.astype(np.int64)] = values
        return dense.reshape(n_out, k)
    if fmt == "bsr":
        nb, kb = int(dims[2]), int(dims[3])
        br, bc = values.shape[1], values.shape[2]
        blocks = np.zeros((nb * kb, br, bc), values.dtype)
        blocks[indices.astype(np.int64)] = values
        dense = blocks.reshape(nb, kb, br, bc).transpose(0, 2, 1, 3).reshape(nb * br, kb * bc)
        return dense[:n_out, :k].copy()
    if fmt == "nm":
        groups, m = int(dims[2]), int(dims[3])
        n = values.shape[1] // groups
        cols = (np.arange(groups * n) // n * m)[None, :] + indices.astype(np.int64)
        dense = np.zeros((n_out, groups * m), values.dtype)
        np.put_along_axis(dense, cols, values, axis=1)
        return dense[:, :k].copy()
    raise ValueError(f"unknown sparse format {fmt!r}")


def reference(op: str, x: np.ndarray, values: np.ndarray, indices: np.ndarray, dims: np.ndarray,
              bias: np.ndarray) -> np.ndarray:
    """NumPy reference of every ``ai.sparseforge`` op."""
    fmt, kind = op_format(op)
    w = decode(values, indices, dims, fmt)
    if kind == "matmul":
        return (x @ w.T + bias).astype(x.dtype)
    y = np.einsum("nk,bkhw->bnhw", w, x)
    return (y + bias.reshape(1, -1, 1, 1)).astype(x.dtype)


# ------------------------------------------------------------------------------------------ ONNX functions


def _const(name: str, array: np.ndarray) -> ir.Node:
    return ir.Node("", "Constant", [], [ir.AttrTensor("value", ir.tensor(np.asarray(array), name=name))],
                   name=name)


class _Builder:
    """Tiny helper to build function bodies node by node."""

    def __init__(self) -> None:
        self.nodes: list[ir.Node] = []

    def op(self, op_type: str, *inputs: ir.Value, **attrs) -> ir.Value:
        attributes = []
        for key, value in attrs.items():
            if isinstance(value, int):
                attributes.append(ir.AttrInt64(key, value))
            elif isinstance(value, (list, tuple)):
                attributes.append(ir.AttrInt64s(key, list(value)))
            else:
                raise TypeError(value)
        node = ir.Node("", op_type, list(inputs), attributes, name=f"n{len(self.nodes)}")
        self.nodes.append(node)
        return node.outputs[0]

    def const(self, array) -> ir.Value:
        node = _const(f"c{len(self.nodes)}", np.asarray(array))
        self.nodes.append(node)
        return node.outputs[0]


def _dense_weight_body(b: _Builder, fmt: str, values: ir.Value, indices: ir.Value, dims: ir.Value) -> ir.Value:
    """Body nodes computing the dense ``[N, K]`` weight (mirrors :func:`decode`)."""
    i64 = ir.DataType.INT64.value
    nk = b.op("Slice", dims, b.const(np.array([0], np.int64)), b.const(np.array([2], np.int64)))
    zero = b.const(np.array([0], np.int64))
    if fmt == "csr":
        zeros = b.op("CastLike", b.op("ConstantOfShape", b.op("ReduceProd", nk, keepdims=1)), values)
        flat = b.op("ScatterND", zeros, b.op("Unsqueeze", b.op("Cast", indices, to=i64), b.const(np.array([1]))),
                    values)
        return b.op("Reshape", flat, nk)
    if fmt == "bsr":
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
    if fmt == "nm":
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
    raise ValueError(fmt)


def function(op: str) -> ir.Function:
    """The model-local ONNX function of ``op`` (its body is the dense computation)."""
    fmt, kind = op_format(op)
    x, values, indices, dims, bias = (ir.Value(name=n) for n in ("X", "values", "indices", "dims", "bias"))
    b = _Builder()
    w = _dense_weight_body(b, fmt, values, indices, dims)
    if kind == "matmul":
        y = b.op("Add", b.op("MatMul", x, b.op("Transpose", w, perm=[1, 0])), bias)
    else:
        w4 = b.op("Unsqueeze", w, b.const(np.array([2, 3], np.int64)))
        y = b.op("Conv", x, w4, bias)
    y.name = "Y"
    graph = ir.Graph([x, values, indices, dims, bias], [y], nodes=b.nodes,
                     opset_imports={"": 18}, name=op)
    return ir.Function(DOMAIN, op, graph=graph, attributes=[])


def ensure_functions(model: ir.Model) -> None:
    """Register the function of every ``ai.sparseforge`` op used in ``model`` and the domain's opset import."""
    used = {n.op_type for n in model.graph if n.domain == DOMAIN}
    if not used:
        return
    model.opset_imports.setdefault(DOMAIN, DOMAIN_VERSION)
    model.graph.opset_imports.setdefault(DOMAIN, DOMAIN_VERSION)
    for op in sorted(used):
        key = (DOMAIN, op, "")
        if key not in model.functions:
            model.functions[key] = function(op)
