"""The op contract: what sparseforge compiles correctly, checked on every node before anything reaches TVM.

Built from the evidence of ``benchmarks/conformance.py`` (the ONNX backend node tests on x86): ops, attribute
values, dtypes and non-constant inputs that gave a wrong result or an internal (TVM) error are refused here, with a
reason, so the user gets one clear :class:`~sparseforge.errors.UnsupportedOpError` (exit 2) instead of a silent
wrong result or a crash. When in doubt, refuse. :func:`violations` returns every problem of a graph;
``importer.SparseforgeImporter._check_for_unsupported_ops`` reports them together with the unknown ops.
"""

from __future__ import annotations

import onnx

# Element types TVM's importer cannot represent or converts wrongly (float8 casts gave wrong values; sub-byte
# types and strings raised inside TVM).
BAD_DTYPES = {
    getattr(onnx.TensorProto, name): name.lower()
    for name in ("BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "UINT4", "INT4",
                 "FLOAT4E2M1", "UINT2", "INT2", "STRING", "COMPLEX64", "COMPLEX128")
    if hasattr(onnx.TensorProto, name)
}

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}

# Ops refused outright: every node test case of them gave a wrong result or an internal error.
REFUSED_OPS = {
    "Attention": "TVM's converter fails (num_heads required) and its expansion returns NaN for fully masked rows",
    "AffineGrid": "TVM's converter raises",
    "Resize": "TVM's converter raises for non-constant scales/sizes and downsamples wrongly with constants",
    "Upsample": "TVM's converter raises",
    "NonMaxSuppression": "TVM's converter raises",
    "LabelEncoder": "string/ML types are not supported",
    "RegexFullMatch": "string types are not supported",
    "StringConcat": "string types are not supported",
    "StringNormalizer": "string types are not supported",
    "StringSplit": "string types are not supported",
    "SplitToSequence": "sequence outputs are not supported",
    "RoiAlign": "max mode gives wrong results",
    "Cosh": "TVM's converter raises",
    "Sinh": "TVM's converter raises",
    "Shape": "TVM's converter raises (no value in Constant)",
    "Size": "TVM's converter raises (no value in Constant)",
}

# Inputs (by index) that must be constants (initializers or Constant nodes): TVM's converters raise or, for
# Expand, compute a wrong shape when they are computed at run time.
CONSTANT_INPUTS = {
    "ReduceMax": (1,), "ReduceMin": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceProd": (1,),
    "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
    "Split": (1,), "TopK": (1,), "CumSum": (1,), "Pad": (1, 2, 3), "OneHot": (1,), "Expand": (1,),
    "Slice": (1, 2, 3, 4), "Range": (0, 1, 2),
}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def rank(name: str, shapes: dict[str, int]) -> int:
    return shapes.get(name, -1)


def _node_problem(node: onnx.NodeProto, constants: set[str], types: dict[str, int], shapes: dict[str, int]
                  ) -> str | None:
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
    if op == "LayerNormalization" and any(node.output[1:]):
        return "the Mean/InvStdDev outputs are not supported (only Y)"
    if op == "BatchNormalization" and _attr(node, "training_mode", 0):
        return "training_mode=1 is not supported"
    if op == "Dropout" and (len(node.input) > 2 and node.input[2] or any(node.output[1:])):
        return "training mode and the mask output are not supported"
    if op == "Mod" and (_attr(node, "fmod", 0) or types.get(node.input[0]) in FLOAT_TYPES):
        return "Mod of floats gives wrong results for edge cases (inf/nan/zero)"
    if op == "Pow" and (len({types.get(i) for i in node.input}) > 1 or types.get(node.input[0]) not in FLOAT_TYPES):
        return "only float base and exponent of the same dtype are supported"
    if op == "MaxPool" and any(node.output[1:]):
        return "the Indices output is not supported"
    if op == "MaxUnpool" and len(node.input) > 2 and node.input[2]:
        return "the output_shape input is not supported"
    if op == "RMSNormalization" and _attr(node, "axis", -1) in (0, -rank(node.input[0], shapes)):
        return "normalizing over every axis (axis=0) is not supported"
    if op == "EyeLike" and _attr(node, "dtype") is not None:
        return "the dtype attribute is not supported"
    if op in ("DequantizeLinear", "QuantizeLinear") and _attr(node, "block_size", 0):
        return "blocked quantization is not supported"
    if op == "IsInf" and (_attr(node, "detect_negative", 1) != 1 or _attr(node, "detect_positive", 1) != 1):
        return "detect_negative/detect_positive=0 are ignored by TVM's converter"
    if op == "ConvTranspose" and _attr(node, "output_shape") is not None:
        return "the output_shape attribute gives wrong shapes"
    if op in ("SpaceToDepth", "DepthToSpace") and (_attr(node, "mode", b"DCR") or b"DCR") == b"CRD":
        return "mode=CRD gives wrong results"
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
        reason = _node_problem(node, constants, types, shapes)
        if reason is not None:
            problems.append((node.op_type, node.name or (node.output[0] if node.output else "?"), reason))
    return problems
