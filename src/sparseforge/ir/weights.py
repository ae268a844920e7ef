"""One layout for every weight: the ``(output, reduction)`` matrix view of weight-bearing ops.

Every later pass reasons about a weight through :class:`WeightView`:

* ``MatMul(x, B)`` with constant ``B[K, N]``: matrix ``B.T`` (N outputs x K reductions);
* ``MatMul(A, x)`` with constant ``A[M, K]``: matrix ``A``;
* ``Gemm(A, B, C)`` with constant ``B``: matrix ``B`` if ``transB`` else ``B.T`` (constant ``A`` likewise);
* ``Conv(x, W[O, I/g, k...])`` (1-D/2-D/3-D, grouped, depthwise): matrix ``W.reshape(O, I/g * prod(k))``, the
  reduction ordered input-channel-major (index ``c * prod(k) + kernel_offset``).

The view maps back to the stored layout (:meth:`WeightView.to_stored`) so rewrites can write modified weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import onnx_ir as ir


#: Op types that always carry a weight in input 1.
CONV_OPS = frozenset({"Conv"})
#: Op types that carry a weight when one operand is constant.
MATMUL_OPS = frozenset({"MatMul", "Gemm"})


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """NumPy value of a constant (initializer that is not a graph input, or a Constant node output)."""
    if value is None:
        return None
    if value.is_graph_input():
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
        attr = producer.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            return attr.as_tensor().numpy()
        for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
            attr = producer.attributes.get(key)
            if attr is not None:
                return np.array(attr.value, dtype=dtype)
        for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
            attr = producer.attributes.get(key)
            if attr is not None:
                return np.array(list(attr.value), dtype=dtype)
    return None


@dataclasses.dataclass
class WeightView:
    """A weight-bearing node seen as an ``(output, reduction)`` matrix.

    Attributes:
        node: the MatMul/Gemm/Conv node.
        weight: the constant weight value (an initializer or Constant output).
        weight_index: position of ``weight`` among ``node.inputs``.
        data_index: position of the activation input among ``node.inputs``.
        out_axis: axis of the stored weight that indexes output channels.
        in_axis: axis of the stored weight that indexes input channels (per group for Conv).
        groups: Conv ``group`` attribute (1 otherwise).
        kernel_shape: spatial kernel shape (Conv), ``()`` otherwise.
        bias: per-output-channel constant bias value (Gemm ``C`` or Conv ``B``) if present.
    """

    node: ir.Node
    weight: ir.Value
    weight_index: int
    data_index: int
    out_axis: int
    in_axis: int
    groups: int = 1
    kernel_shape: tuple[int, ...] = ()
    bias: ir.Value | None = None

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def name(self) -> str:
        return self.node.name or self.weight.name or "?"

    def stored(self) -> np.ndarray:
        array = constant_array(self.weight)
        assert array is not None, "WeightView over a non-constant weight"
        return array

    def matrix(self) -> np.ndarray:
        """The weight as an ``(output, reduction)`` array (a view or copy; do not mutate)."""
        w = self.stored()
        if self.node.op_type == "Conv":
            return w.reshape(w.shape[0], -1)
        return w if self.out_axis == 0 else w.T

    def to_stored(self, matrix: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`matrix`: an ``(output, reduction)`` array back in the stored layout."""
        shape = self.stored().shape
        if self.node.op_type == "Conv":
            return np.ascontiguousarray(matrix.reshape(shape))
        return np.ascontiguousarray(matrix if self.out_axis == 0 else matrix.T)

    @property
    def shape(self) -> tuple[int, int]:
        # the constant's own shape: a folded value's declared shape may still hold symbolic dims
        const = self.weight.const_value
        w_shape = tuple(const.shape) if const is not None else self.stored().shape
        if self.node.op_type == "Conv":
            return int(w_shape[0]), int(np.prod(w_shape[1:]))
        return (int(w_shape[0]), int(w_shape[1])) if self.out_axis == 0 else (int(w_shape[1]), int(w_shape[0]))

    @property
    def kernel_size(self) -> int:
        return int(np.prod(self.kernel_shape)) if self.kernel_shape else 1

    @property
    def is_weight_second(self) -> bool:
        """True when the activation is the left operand (``x @ W``-style): outputs on the last axis."""
        return self.data_index == 0

    def bias_array(self) -> np.ndarray | None:
        if self.bias is None:
            return None
        b = constant_array(self.bias)
        return None if b is None else b.reshape(-1)


def _attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.value)


def _per_output_bias(value: ir.Value | None, n_out: int) -> ir.Value | None:
    array = constant_array(value)
    if array is None:
        return None
    if array.size == n_out and (array.ndim == 1 or (array.ndim == 2 and array.shape[0] == 1)):
        return value
    return None


def view_of(node: ir.Node) -> WeightView | None:
    """The :class:`WeightView` of ``node``, or None if it has no constant 2-D weight.

    A weight computed at run time (a graph input, or the output of other nodes) has no view: the layer stays a
    dense op, compiled as written (see :func:`runtime_weight`).
    """
    if node.domain not in ("", "ai.onnx"):
        return None
    op = node.op_type
    inputs = list(node.inputs)
    if op == "Conv":
        w = inputs[1] if len(inputs) > 1 else None
        array = constant_array(w)
        if array is None:
            return None
        kernel = tuple(int(k) for k in array.shape[2:])
        bias = _per_output_bias(inputs[2] if len(inputs) > 2 else None, array.shape[0])
        return WeightView(node, w, 1, 0, out_axis=0, in_axis=1, groups=_attr_int(node, "group", 1),
                          kernel_shape=kernel, bias=bias)
    if op == "MatMul":
        a, b = inputs[0], inputs[1]
        b_arr, a_arr = constant_array(b), constant_array(a)
        if b_arr is not None and a_arr is None and b_arr.ndim == 2:
            return WeightView(node, b, 1, 0, out_axis=1, in_axis=0)
        if a_arr is not None and b_arr is None and a_arr.ndim == 2:
            return WeightView(node, a, 0, 1, out_axis=0, in_axis=1)
        return None
    if op == "Gemm":
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        b_arr, a_arr = constant_array(b), constant_array(a)
        trans_a, trans_b = _attr_int(node, "transA", 0), _attr_int(node, "transB", 0)
        if b_arr is not None and a_arr is None:
            n_out = b_arr.shape[0] if trans_b else b_arr.shape[1]
            bias = _per_output_bias(c, n_out) if _gemm_unit_scales(node) else None
            return (WeightView(node, b, 1, 0, out_axis=0, in_axis=1, bias=bias) if trans_b
                    else WeightView(node, b, 1, 0, out_axis=1, in_axis=0, bias=bias))
        if a_arr is not None and b_arr is None:
            return (WeightView(node, a, 0, 1, out_axis=1, in_axis=0) if trans_a
                    else WeightView(node, a, 0, 1, out_axis=0, in_axis=1))
        return None
    return None


#: Quantized weight-bearing ops: (weight input, weight zero-point input). The weight is the right operand
#: ``B[K, N]`` (MatMulInteger/QLinearMatMul) or the Conv kernel ``W[M, C/g, k...]`` (ConvInteger/QLinearConv).
QUANTIZED_OPS = {"MatMulInteger": (1, 3), "QLinearMatMul": (3, 5), "ConvInteger": (1, 3), "QLinearConv": (3, 5)}


@dataclasses.dataclass
class QuantizedWeightView(WeightView):
    """A quantized layer's integer weight as an ``(output, reduction)`` matrix of ``w - zero_point`` (float32,
    exact for 8/16-bit weights): a stored value equal to its zero point is a zero. Analysis only: quantized layers
    are compiled dense, as written, and never rewritten (:meth:`to_stored` refuses)."""

    zero_point: np.ndarray | None = None

    def matrix(self) -> np.ndarray:
        w = self.stored().astype(np.int64)
        is_conv = self.node.op_type in ("ConvInteger", "QLinearConv")
        mat = w.reshape(w.shape[0], -1) if is_conv else w.T  # outputs first
        if self.zero_point is not None:
            mat = mat - self.zero_point.astype(np.int64).reshape(-1, 1)
        return mat.astype(np.float32)

    def to_stored(self, matrix: np.ndarray) -> np.ndarray:
        raise NotImplementedError("quantized weights are analysed, never rewritten")

    @property
    def shape(self) -> tuple[int, int]:
        w = self.stored().shape
        if self.node.op_type in ("ConvInteger", "QLinearConv"):
            return int(w[0]), int(np.prod(w[1:]))
        return int(w[1]), int(w[0])


def quantized_view_of(node: ir.Node) -> QuantizedWeightView | None:
    """The :class:`QuantizedWeightView` of a MatMulInteger/QLinearMatMul (2-D constant ``B``) or
    ConvInteger/QLinearConv node with a constant integer weight, or None."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in QUANTIZED_OPS:
        return None
    index, zp_index = QUANTIZED_OPS[node.op_type]
    inputs = list(node.inputs)
    w = inputs[index] if len(inputs) > index else None
    array = constant_array(w)
    if array is None or array.dtype.kind not in "iu":
        return None
    zp = constant_array(inputs[zp_index]) if len(inputs) > zp_index and inputs[zp_index] is not None else None
    if len(inputs) > zp_index and inputs[zp_index] is not None and zp is None:
        return None  # a zero point computed at run time: zeros of the weight are not known
    if node.op_type in ("ConvInteger", "QLinearConv"):
        if array.ndim < 3 or (zp is not None and zp.size not in (1, array.shape[0])):
            return None
        return QuantizedWeightView(node, w, index, 0, out_axis=0, in_axis=1, groups=_attr_int(node, "group", 1),
                                   kernel_shape=tuple(int(k) for k in array.shape[2:]), zero_point=zp)
    if array.ndim != 2 or (zp is not None and zp.size not in (1, array.shape[1])):
        return None
    return QuantizedWeightView(node, w, index, 0, out_axis=1, in_axis=0, zero_point=zp)


def quantized_views(graph: ir.Graph) -> Iterator[QuantizedWeightView]:
    """Every quantized weight-bearing node of ``graph`` (top level) with a constant integer weight."""
    for node in graph:
        view = quantized_view_of(node)
        if view is not None:
            yield view


def runtime_weight(node: ir.Node) -> str | None:
    """Why the weight of ``node`` is not analysed because it is computed at run time, or None.

    Conv and ConvTranspose whose weight (input 1) is not a constant, and MatMul/Gemm whose input 1 is a graph
    input or the transpose of a shared constant (tied weights; an activation-by-activation product such as
    attention's ``Q @ K^T`` is not a weight and gets no note). Such layers stay dense, compiled as written; ``inspect`` lists them with this note.
    """
    if node.domain not in ("", "ai.onnx") or node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
        return None
    inputs = list(node.inputs)
    w = inputs[1] if len(inputs) > 1 else None
    if w is None or constant_array(w) is not None or view_of(node) is not None:
        return None
    if node.op_type in ("MatMul", "Gemm") and not w.is_graph_input():
        producer = w.producer()
        if producer is not None and producer.op_type == "Transpose" and producer.inputs \
                and constant_array(producer.inputs[0]) is not None:
            source = producer.inputs[0]
            if not source.is_graph_output() and all(user is producer for user, _ in source.uses()):
                return None  # only this layer reads it: constant folding makes the transpose a plain weight
            shared = source.name
            return (f"the weight is the transpose of '{shared}', which other layers share (tied weights, kept as "
                    "one tensor): the layer is compiled dense and not analysed")
        return None
    source = "a graph input" if w.is_graph_input() else "computed at run time"
    why = f"the weight '{w.name}' is {source}: the layer is compiled dense, as written, and not analysed"
    if w.is_graph_input() and w.is_initializer():
        why += " (it has an initializer: --freeze-initializer-inputs makes it a constant)"
    return why


def _gemm_unit_scales(node: ir.Node) -> bool:
    alpha = node.attributes.get("alpha")
    beta = node.attributes.get("beta")
    return (alpha is None or float(alpha.value) == 1.0) and (beta is None or float(beta.value) == 1.0)


def weight_views(graph: ir.Graph) -> Iterator[WeightView]:
    """Every weight-bearing node of ``graph`` (top level), in graph order."""
    for node in graph:
        view = view_of(node)
        if view is not None:
            yield view
