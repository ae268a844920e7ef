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


def static_matmul_candidate(node: ir.Node) -> WeightView | None:
    """:func:`structured_candidate` with a static activation shape and, for a Gemm, :func:`plain_gemm` (what the
    rewrites that reshape or gather the activation need), else None."""
    view = structured_candidate(node)
    if view is None:
        return None
    x = node.inputs[0]
    if x.shape is None or not x.shape.is_static() or (node.op_type == "Gemm" and not plain_gemm(node)):
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


def shared_weight(node: ir.Node, view: WeightView) -> bool:
    """Whether ``node``'s weight is read by another node too, or is a graph output: a rewrite that replaces the
    weight would change what the others see, so the structured rewrites leave such layers alone."""
    return view.weight.is_graph_output() or any(user is not node for user, _ in view.weight.uses())


def plain_gemm(node: ir.Node) -> bool:
    """A Gemm with ``transA=0`` and unit ``alpha``/``beta``: ``x @ op(B) + C``."""
    attrs = node.attributes
    return (int(attrs["transA"].value) if "transA" in attrs else 0) == 0 and \
        all(float(attrs[key].value) == 1.0 for key in ("alpha", "beta") if key in attrs)


def replace_layer(model: ir.Model, node: ir.Node, new_nodes: list[ir.Node]) -> None:
    """Insert ``new_nodes`` before ``node`` and let the last one take ``node``'s place: its output takes over the
    old output's uses, name, shape and type, the node its name; ``node`` is removed."""
    old, last = node.outputs[0], new_nodes[-1]
    for new in new_nodes:
        model.graph.insert_before(node, new)
    result = last.outputs[0]
    name, shape, type_ = old.name, old.shape, old.type
    old.replace_all_uses_with(result, replace_graph_outputs=True)
    model.graph.remove(node, safe=True)
    result.name, result.shape, result.type = name, shape, type_
    last.name = node.name or last.name
