"""Which layers the structured rewrites (:mod:`.factorize`, :mod:`.block_diagonal`, :mod:`.monarch`,
:mod:`.separable`) consider."""

from __future__ import annotations

import onnx_ir as ir

from sparseforge.ir.weights import WeightView, view_of

#: Weights smaller than this are not worth extra ops.
MIN_ELEMENTS = 4096


def structured_candidate(node: ir.Node) -> WeightView | None:
    """The weight view of a MatMul/Gemm ``x @ W`` (activation on the left) with a float weight of at least
    :data:`MIN_ELEMENTS` elements, else None."""
    view = view_of(node)
    if view is None or node.op_type not in ("MatMul", "Gemm") or view.data_index != 0:
        return None
    stored = view.stored()
    if stored.size < MIN_ELEMENTS or stored.dtype.kind != "f":
        return None
    return view


def conv_candidate(node: ir.Node) -> WeightView | None:
    """The weight view of an ungrouped ``Conv`` (any rank, constant float weight of at least
    :data:`MIN_ELEMENTS` elements), else None."""
    view = view_of(node)
    if view is None or node.op_type != "Conv" or view.groups != 1:
        return None
    stored = view.stored()
    if stored.size < MIN_ELEMENTS or stored.dtype.kind != "f":
        return None
    return view


def plain_gemm(node: ir.Node) -> bool:
    """A Gemm with ``transA=0`` and unit ``alpha``/``beta``: ``x @ op(B) + C``."""
    attrs = node.attributes
    return (int(attrs["transA"].value) if "transA" in attrs else 0) == 0 and \
        all(float(attrs[key].value) == 1.0 for key in ("alpha", "beta") if key in attrs)
