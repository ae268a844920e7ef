"""sparseforge's own ONNX operators (domain ``ai.sparseforge``): compressed weights that ONNX Runtime still runs.

Each op replaces a dense ``y = x @ W^T + bias`` (``W`` in the ``(output, reduction)`` view, ``[N, K]``) and stores
``W`` compressed in one structure form (:mod:`sparseforge.ir.forms`, which owns the encodings). Every op has a
NumPy reference (:func:`reference`) and a model-local ONNX function whose body decompresses ``W`` with standard
ops and applies it, so an exported model runs in any ONNX runtime; sparseforge's codegen recognises the op by
``(domain, op_type)`` and emits a sparse kernel instead.

Inputs of every op: ``X, values, indices, dims, bias``.

===================  ==========================================  ==================================  ============
op                   values                                      indices                             dims (int64)
===================  ==========================================  ==================================  ============
``CsrMatMul``        ``[nnz]`` nonzeros, row-major               ``[nnz]`` int32 flat ``r*K + c``    ``[N, K]``
``BsrMatMul``        ``[nnzb, R, C]`` nonzero blocks             ``[nnzb]`` int32 flat block index   ``[N, K, NB, KB]``
                                                                 ``rb*KB + cb`` (edges zero-padded)
``NmMatMul``         ``[N, G*n]`` kept values                    ``[N, G*n]`` uint8 offset in group  ``[N, K, G, M]``
===================  ==========================================  ==================================  ============

Structured ops (:data:`STRUCTURED_OPS`) have inputs of their own: ``FftConv(X, W, bias, plan)``, a depthwise
long 1-D convolution through the DFT (:mod:`sparseforge.ir.forms.fft_conv`).

``*Conv1x1`` variants take ``X[B, K, H, W]`` (NCHW) and give ``Y[B, N, H, W]``; ``*Conv`` variants are any 2-D
convolution (``W`` is ``[Cout, Cin/group * kh * kw]``, reduction ordered ``(ci, kh, kw)``) and carry the ONNX Conv
attributes ``kernel_shape``, ``strides``, ``pads``, ``dilations``, ``group`` (:mod:`sparseforge.ir.conv`); the
``*MatMul`` variants take ``X[..., K]`` and give ``Y[..., N]``. ``bias`` is ``[N]`` (zeros when the layer had none). Exactness: decompression is
exact, so results match the dense op up to fp32 summation order.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparseforge.ir import forms
from sparseforge.ir.conv import ConvSpec
from sparseforge.ir.conv import reference as conv_reference
from sparseforge.ir.forms import Encoded, decode, encode  # noqa: F401 - re-exported (op-level API)
from sparseforge.ir.forms import fft_conv
from sparseforge.ir.forms.onnx_body import Builder
from sparseforge.ir.keys import DOMAIN, DOMAIN_VERSION

FORMATS = tuple(forms.FORMS)
KINDS = ("matmul", "conv1x1", "conv")
_KIND_SUFFIX = {"matmul": "MatMul", "conv1x1": "Conv1x1", "conv": "Conv"}
#: The Conv attributes a ``*Conv`` op carries, with the defaults its function declares.
CONV_ATTRIBUTES = (("kernel_shape", None), ("strides", [1, 1]), ("pads", [0, 0, 0, 0]), ("dilations", [1, 1]),
                   ("group", 1))
_OP_TYPES = {(fmt, kind): fmt.capitalize() + suffix for fmt in FORMATS for kind, suffix in _KIND_SUFFIX.items()}
OP_TYPES = frozenset(_OP_TYPES.values())
#: Structured ops (own inputs, own function body): op type -> form module.
STRUCTURED_OPS = {fft_conv.OP_TYPE: fft_conv}
#: Every op of the domain.
ALL_OP_TYPES = OP_TYPES | frozenset(STRUCTURED_OPS)


def op_type(fmt: str, kind: str) -> str:
    """``("bsr", "conv1x1")`` -> ``"BsrConv1x1"``."""
    return _OP_TYPES[(fmt, kind)]


def op_format(op: str) -> tuple[str, str]:
    """``"BsrConv1x1"`` -> ``("bsr", "conv1x1")``."""
    for key, value in _OP_TYPES.items():
        if value == op:
            return key
    raise KeyError(op)


def attributes(enc: Encoded) -> list[ir.Attr]:
    """The node attributes of an encoded weight: ``format`` and, per form, ``block`` or ``nm``."""
    attrs = [ir.AttrString("format", enc.fmt)]
    if enc.block:
        attrs.append(ir.AttrInt64s("block", list(enc.block)))
    if enc.nm:
        attrs.append(ir.AttrInt64s("nm", list(enc.nm)))
    return attrs


def reference(op: str, x: np.ndarray, values: np.ndarray, indices: np.ndarray, dims: np.ndarray,
              bias: np.ndarray | None = None, *, spec: ConvSpec | None = None) -> np.ndarray:
    """NumPy reference of every ``ai.sparseforge`` op (a structured op's own inputs in order after ``x``);
    ``*Conv`` ops need their geometry ``spec``."""
    if op in STRUCTURED_OPS:
        return STRUCTURED_OPS[op].op_reference(x, values, indices, dims)
    fmt, kind = op_format(op)
    w = decode(values, indices, dims, fmt)
    if kind == "matmul":
        return (x @ w.T + bias).astype(x.dtype)
    if kind == "conv":
        return conv_reference(spec, w, x, bias)
    y = np.einsum("nk,bkhw->bnhw", w, x)
    return (y + bias.reshape(1, -1, 1, 1)).astype(x.dtype)


#: The function bodies use ops in their opset-15+ form (CastLike; Unsqueeze/Squeeze axes as inputs; Slice,
#: ScatterND/ScatterElements and ReduceProd as used here mean the same from 15 to 21). A function must import the
#: same default-opset version as its model (the ONNX checker rejects a mismatch), so the body takes the model's.
MIN_FUNCTION_OPSET = 15
DEFAULT_FUNCTION_OPSET = 18


def function(op: str, opset: int = DEFAULT_FUNCTION_OPSET) -> ir.Function:
    """The model-local ONNX function of ``op`` (its body is the dense computation), importing default opset
    ``opset`` (>= :data:`MIN_FUNCTION_OPSET`; a structured op may need more)."""
    if op in STRUCTURED_OPS:
        return STRUCTURED_OPS[op].function(opset)
    if opset < MIN_FUNCTION_OPSET:
        raise ValueError(f"the ai.sparseforge function bodies need opset {MIN_FUNCTION_OPSET} or later, got {opset}")
    fmt, kind = op_format(op)
    x, values, indices, dims, bias = (ir.Value(name=n) for n in ("X", "values", "indices", "dims", "bias"))
    b = Builder()
    w = forms.get(fmt).weight_body(b, values, indices, dims)
    attributes = []
    if kind == "matmul":
        y = b.op("Add", b.op("MatMul", x, b.op("Transpose", w, perm=[1, 0])), bias)
    elif kind == "conv":
        y, attributes = _conv_body(b, x, w, bias)
    else:
        w4 = b.op("Unsqueeze", w, b.const(np.array([2, 3], np.int64)))
        y = b.op("Conv", x, w4, bias)
    y.name = "Y"
    graph = ir.Graph([x, values, indices, dims, bias], [y], nodes=b.nodes,
                     opset_imports={"": opset}, name=op)
    return ir.Function(DOMAIN, op, graph=graph, attributes=attributes)


def _conv_body(b: Builder, x: ir.Value, w: ir.Value, bias: ir.Value) -> tuple[ir.Value, list[ir.Attr]]:
    """``Conv(X, reshape(W, [N, -1, kh, kw]), bias)`` with the node's Conv attributes (function attribute refs)."""
    ints = ir.AttributeType.INTS
    kernel = ir.Node("", "Constant", [], [ir.RefAttr("value_ints", "kernel_shape", ints)], name="kernel_shape")
    b.nodes.append(kernel)
    n = b.op("Slice", b.op("Shape", w), b.i64(0), b.i64(1))
    w4 = b.op("Reshape", w, b.op("Concat", n, b.i64(-1), kernel.outputs[0], axis=0))
    refs = [ir.RefAttr(name, name, ir.AttributeType.INT if name == "group" else ints)
            for name, _ in CONV_ATTRIBUTES]
    conv = ir.Node("", "Conv", [x, w4, bias], refs, name="conv")
    b.nodes.append(conv)
    declared = [ir.Attr(name, ir.AttributeType.INT if name == "group" else ints, default)
                for name, default in CONV_ATTRIBUTES]
    return conv.outputs[0], declared


def ensure_functions(model: ir.Model) -> None:
    """Register the function of every ``ai.sparseforge`` op used in ``model`` (importing the model's default
    opset, rebuilt if an existing one imports another) and the domain's opset import."""
    used = {n.op_type for n in model.graph if n.domain == DOMAIN}
    if not used:
        return
    model.opset_imports.setdefault(DOMAIN, DOMAIN_VERSION)
    model.graph.opset_imports.setdefault(DOMAIN, DOMAIN_VERSION)
    opset = model_opset(model)
    for op in sorted(used):
        key = (DOMAIN, op, "")
        existing = model.functions.get(key)
        if existing is None or existing.opset_imports.get("") != opset:
            model.functions[key] = function(op, opset)


def model_opset(model: ir.Model) -> int:
    """The model's default-domain (``""``) opset version."""
    return int(model.opset_imports.get("", model.graph.opset_imports.get("", DEFAULT_FUNCTION_OPSET)))
