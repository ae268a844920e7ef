"""The op contract: what sparseforge compiles correctly, checked on every node before anything reaches TVM.

Built from the evidence of ``benchmarks/conformance.py`` (the ONNX backend node tests on x86): ops, attribute
values, dtypes and non-constant inputs that gave a wrong result or an internal (TVM) error are refused here, with a
reason, so the user gets one clear :class:`~sparseforge.errors.UnsupportedOpError` (exit 2) instead of a silent
wrong result or a crash. When in doubt, refuse. :func:`violations` returns every problem of a graph;
``importer.SparseforgeImporter._check_for_unsupported_ops`` reports them together with the unknown ops.
"""

from __future__ import annotations

import onnx
import onnx.numpy_helper

# Element types TVM's importer cannot represent or converts wrongly (float8 casts gave wrong values; sub-byte
# types and strings raised inside TVM).
BAD_DTYPES = {
    getattr(onnx.TensorProto, name): name.lower()
    for name in ("BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "UINT4", "INT4",
                 "FLOAT4E2M1", "UINT2", "INT2", "STRING", "COMPLEX64", "COMPLEX128")
    if hasattr(onnx.TensorProto, name)
}


# Ops refused outright: every node test case of them gave a wrong result or an internal error.
REFUSED_OPS = {
    "AffineGrid": "TVM's converter raises",
    "Upsample": "TVM's converter raises",
    "NonMaxSuppression": "TVM's converter raises",
    "LabelEncoder": "string/ML types are not supported",
    "RegexFullMatch": "string types are not supported",
    "StringConcat": "string types are not supported",
    "StringNormalizer": "string types are not supported",
    "StringSplit": "string types are not supported",
    "SplitToSequence": "sequence outputs are not supported",
    "RoiAlign": "max mode gives wrong results",
    "Shape": "the shape of this value is not static (sparseforge folds Shape of static values)",
    "Size": "the shape of this value is not static (sparseforge folds Size of static values)",
}

# Inputs (by index) that must be constants (initializers or Constant nodes): TVM's converters raise or, for
# Expand, compute a wrong shape when they are computed at run time.
CONSTANT_INPUTS = {
    "ReduceMax": (1,), "ReduceMin": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceProd": (1,),
    "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
    "Split": (1,), "TopK": (1,), "CumSum": (1,), "CumProd": (1,), "Pad": (1, 2, 3), "OneHot": (1, 2), "Expand": (1,),
    "Slice": (1, 2, 3, 4), "Range": (0, 1, 2), "Resize": (1, 2, 3), "DFT": (1, 2), "STFT": (1, 3),
}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_problem(node: onnx.NodeProto, constants: set[str], types: dict[str, int], shapes: dict[str, int],
                  zero_size_splits: frozenset[str] = frozenset()) -> str | None:
    op = node.op_type
    if op in REFUSED_OPS:
        return REFUSED_OPS[op]
    for name in list(node.input) + list(node.output):
        if name and types.get(name) in BAD_DTYPES:
            return f"dtype {BAD_DTYPES[types[name]]} of '{name}' is not supported"
    if op == "CastLike" or op == "Cast":
        to = _attr(node, "to")
        if to in BAD_DTYPES:
            return f"cast to {BAD_DTYPES[to]} is not supported"
    for i in CONSTANT_INPUTS.get(op, ()):
        if i < len(node.input) and node.input[i] and node.input[i] not in constants:
            return f"input {i} ('{node.input[i]}') must be a constant (it is computed at run time)"
    if op in ("ReduceMax", "ReduceMin") and types.get(node.input[0]) == onnx.TensorProto.BOOL:
        return "bool inputs are not supported (TVM's constant folding has no bool identity)"
    if op == "Split" and (len(node.input) > 1 and node.input[1] in zero_size_splits
                          or 0 in list(_attr(node, "split") or ())[:-1]):
        return "zero-size splits before the last output are not supported"
    if op == "BatchNormalization" and _attr(node, "training_mode", 0):
        return "training_mode=1 is not supported"
    if op == "Dropout" and (len(node.input) > 2 and node.input[2] or any(node.output[1:])):
        return "training mode and the mask output are not supported"
    if op == "MaxPool" and any(node.output[1:]):
        return "the Indices output is not supported"
    if op == "MaxUnpool" and len(node.input) > 2 and node.input[2]:
        return "the output_shape input is not supported"
    if op in ("DequantizeLinear", "QuantizeLinear") and _attr(node, "block_size", 0):
        return "blocked quantization is not supported"
    if op == "SpaceToDepth" and (_attr(node, "mode", b"DCR") or b"DCR") == b"CRD":
        return "mode=CRD gives wrong results"
    if op == "ConvTranspose" and _attr(node, "output_shape") is not None:
        return "the output_shape attribute gives wrong shapes"
    return None


def _kind(type_proto: onnx.TypeProto) -> str | None:
    kind = type_proto.WhichOneof("value")
    return None if kind in (None, "tensor_type") else kind.replace("_type", "")


def violations(graph: onnx.GraphProto) -> list[tuple[str, str, str]]:
    """``(op, node name, reason)`` for every node or graph value outside the contract."""
    problems: list[tuple[str, str, str]] = []
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        kind = _kind(value.type)
        if kind is not None:
            problems.append(("graph", value.name, f"'{value.name}' is a {kind}; sparseforge compiles tensors only"))
    constants = {t.name for t in graph.initializer}
    zero_size_splits = frozenset(t.name for t in graph.initializer if len(t.dims) == 1 and t.dims[0] <= 256
                                 and t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
                                 and 0 in onnx.numpy_helper.to_array(t)[:-1])
    types = {t.name: t.data_type for t in graph.initializer}
    shapes = {t.name: len(t.dims) for t in graph.initializer}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
            if value.type.tensor_type.HasField("shape"):
                shapes[value.name] = len(value.type.tensor_type.shape.dim)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            constants.update(node.output)
            kinds = [a.name for a in node.attribute if a.name != "value"]
            if kinds:
                problems.append(("Constant", node.name or node.output[0],
                                 f"a Constant given by {kinds[0]} (e.g. a folded Shape/Size) is not supported"))
            continue
        if node.domain not in ("", "ai.onnx"):
            continue
        reason = _node_problem(node, constants, types, shapes, zero_size_splits)
        if reason is not None:
            problems.append((node.op_type, node.name or (node.output[0] if node.output else "?"), reason))
    return problems


def bindable_inputs(graph: onnx.GraphProto) -> list[str]:
    """Graph inputs that a refused non-constant parameter (:data:`CONSTANT_INPUTS`) is computed from: binding them
    (``compile --bind``) makes it a constant. The walk back stops at Shape/Size (they read shapes, not values)."""
    graph_inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    found: dict[str, None] = {}
    seen: set[str] = set()
    for node in graph.node:
        for i in CONSTANT_INPUTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
            stack = [node.input[i]] if i < len(node.input) and node.input[i] else []
            while stack:
                name = stack.pop()
                if name in seen:
                    continue
                seen.add(name)
                if name in graph_inputs:
                    found[name] = None
                elif name in producer and producer[name].op_type not in ("Shape", "Size"):
                    stack.extend(n for n in producer[name].input if n)
    return list(found)


#: Refused ops that constant folding may still remove (a Shape of a static value folds away).
_FOLDABLE = frozenset({"Shape", "Size"})


def early_refusals(nodes) -> list[tuple[str, str, str]]:
    """``(op, node name, reason)`` for top-level nodes (``onnx_ir`` nodes) refused whatever folding does, checked
    before the passes run: some of them (``SplitToSequence``) make constant folding itself fail. A
    ``SplitToSequence`` read only by ``SequenceAt`` with constant positions (``torch.chunk``/``split`` as the
    dynamo exporter writes them) is not refused: the optimizer turns it into a ``Split``, and what is left after
    the passes is checked again before import."""
    return [(n.op_type, n.name or "", REFUSED_OPS[n.op_type]) for n in nodes
            if n.domain in ("", "ai.onnx") and n.op_type in REFUSED_OPS and n.op_type not in _FOLDABLE
            and not _split_to_tensors(n)]


def _split_to_tensors(node) -> bool:
    """A ``SplitToSequence`` whose sequence is only read by ``SequenceAt`` at constant positions."""
    if node.op_type != "SplitToSequence" or node.outputs[0].is_graph_output():
        return False
    uses = list(node.outputs[0].uses())
    return bool(uses) and all(user.op_type == "SequenceAt" and len(user.inputs) > 1 and _constant(user.inputs[1])
                              for user, _ in uses)


def _constant(value) -> bool:
    """An initializer or the output of a ``Constant`` node."""
    if value is None:
        return False
    producer = value.producer()
    return value.const_value is not None or (producer is not None and producer.op_type == "Constant")
