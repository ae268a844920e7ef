"""Expand ONNX ops that are defined as functions into their function bodies.

Many newer ONNX ops (``RotaryEmbedding``, ``CenterCropPad``, the window functions, ``LinearAttention``,
``CausalConvWithState``, the losses, ...) are specified by a function body of standard ops in their schema. When a
backend has no lowering for such an op, :func:`expand_functions` replaces each of its nodes with that body, exactly
as the ONNX spec defines the op (and as the node tests' ``*_expanded`` cases are built): the body of the newest
function version not above the model's opset (a body written for another opset version than the model's is not
used: the op then stays), context-dependent bodies built from the node's attributes and input
types, the schema's default attributes filled in first. The bodies are inlined with onnx-ir's ``InlinePass``;
constant folding afterwards removes their shape arithmetic. Only top-level graph nodes of the default domain are
expanded; subgraphs are left as they are.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import onnx
import onnx_ir as ir
import onnx_ir.passes.common

_DOMAIN = "sparseforge.expanded"


def _default_opset(model: ir.Model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1)))


def _input_type(value: ir.Value | None) -> onnx.TypeProto:
    if value is None or value.dtype is None:
        return onnx.TypeProto()
    dims = None if value.shape is None else [d if isinstance(d, int) else None for d in value.shape]
    return onnx.helper.make_tensor_type_proto(int(value.dtype), dims)


def _function_body(node: ir.Node, opset: int) -> onnx.FunctionProto | None:
    """The schema's function body for ``node`` at ``opset`` (default attributes filled in), or None."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return None
    plain = [v for v in schema.function_opset_versions if v <= opset]
    dependent = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    if not plain and not dependent:
        return None
    for name, attr in schema.attributes.items():
        if name not in node.attributes and attr.default_value.name:
            node.attributes[name] = ir.serde.deserialize_attribute(attr.default_value)
    if plain and (not dependent or max(plain) >= max(dependent)):
        data = schema.get_function_with_opset_version(max(plain))
    else:
        node_proto = ir.serde.serialize_node(node)
        types = [_input_type(v).SerializeToString() for v in node.inputs]
        data = schema.get_context_dependent_function_with_opset_version(max(dependent),
                                                                        node_proto.SerializeToString(), types)
    function = onnx.FunctionProto()
    function.ParseFromString(data)
    return function if function.node else None


def _version_clash(model: ir.Model, domain: str, version: int) -> bool:
    have = model.opset_imports.get(domain or "", model.opset_imports.get("ai.onnx") if domain in ("", "ai.onnx")
                                   else None)
    return have is not None and int(have) != int(version)


def expand_functions(model: ir.Model, lowered: Callable[[str, str], bool]) -> collections.Counter:
    """Expand, in place, every top-level node of the default domain that ``lowered(domain, op_type)`` rejects
    and whose schema defines a function body; returns ``{op_type: count}`` of the expanded nodes."""
    opset = _default_opset(model)
    expanded: collections.Counter = collections.Counter()
    for node in list(model.graph):
        if node.domain not in ("", "ai.onnx") or lowered(node.domain, node.op_type):
            continue
        body = _function_body(node, opset)
        if body is None or any(_version_clash(model, o.domain, o.version) for o in body.opset_import):
            continue  # a body written for another opset could mean something else here: the op stays
        body.domain, body.name = _DOMAIN, f"{node.op_type}_{sum(expanded.values())}"
        function = ir.serde.deserialize_function(body)
        model.functions[function.identifier()] = function
        expanded[node.op_type] += 1
        node.domain, node.op_type, node.version = _DOMAIN, body.name, None
    if expanded:
        model.opset_imports[_DOMAIN] = 1
        for domain, version in ((d, v) for f in model.functions.values() for d, v in f.opset_imports.items()):
            model.opset_imports.setdefault(domain, version)
        onnx_ir.passes.common.InlinePass()(model)
        model.opset_imports.pop(_DOMAIN, None)
    return expanded


def function_body_false_alarm(proto: onnx.ModelProto, problem: str,
                              check: Callable[[onnx.ModelProto], str | None]) -> bool:
    """Whether ``problem`` (``check``'s complaint about ``proto``) was raised inside an op's own ONNX function body
    and goes away once the ops defined as functions are expanded.

    ONNX's shape inference descends into schema function bodies, and some bodies fail its own inference
    (``MeanVarianceNormalization``-13's ``Constant``): such a model is valid, and ONNX Runtime runs it."""
    if problem.count("Inference error(s)") < 2:
        return False
    model = ir.serde.deserialize_model(proto)
    if not expand_functions(model, lambda domain, op_type: False):
        return False
    return check(ir.to_proto(model)) is None
