"""Validity of ONNX models sparseforge reads and writes: the ONNX checker with full shape inference, and (for
written files) an ONNX Runtime session that loads the file (no run, no graph optimization).

Every command refuses an input the checker rejects before doing any work (unless the user allows it), and checks
every ONNX file it writes before moving it into place: a success exit never leaves a file that ONNX or ONNX
Runtime rejects. Functions return the problem as text (None: valid) so callers decide what it means.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto

from sparseforge.errors import InternalError, InvalidModelError
from sparseforge.ir.expand import function_body_false_alarm

#: In-memory checks need a serialized model under protobuf's 2 GB limit; larger ones are checked from files.
_PROTO_LIMIT = (1 << 31) - (1 << 26)


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else text)[:limit]


#: A tensor stored in a model with more elements than this is refused (absurd dims from a corrupted file).
MAX_TENSOR_ELEMENTS = 1 << 34

# typed data fields and how many entries one element takes in them (ONNX TensorProto, onnx.proto)
_FIELD_OF = {
    TensorProto.FLOAT: ("float_data", 1), TensorProto.COMPLEX64: ("float_data", 2),
    TensorProto.DOUBLE: ("double_data", 1), TensorProto.COMPLEX128: ("double_data", 2),
    TensorProto.INT64: ("int64_data", 1), TensorProto.UINT32: ("uint64_data", 1),
    TensorProto.UINT64: ("uint64_data", 1), TensorProto.STRING: ("string_data", 1),
}
_PACKED_4BIT = {getattr(TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(TensorProto, n)}


def iter_tensors(graph: onnx.GraphProto, where: str = "") -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every tensor stored in ``graph`` (initializers, sparse initializer parts, attribute tensors, subgraphs),
    with a description of where it is."""
    for t in graph.initializer:
        yield f"initializer '{t.name}'{where}", t
    for s in graph.sparse_initializer:
        yield f"sparse initializer '{s.values.name}' values{where}", s.values
        yield f"sparse initializer '{s.values.name}' indices{where}", s.indices
    for node in graph.node:
        for attr in node.attribute:
            label = f"attribute '{attr.name}' of node '{node.name or node.op_type}'{where}"
            if attr.HasField("t"):
                yield label, attr.t
            for t in attr.tensors:
                yield label, t
            if attr.HasField("g"):
                yield from iter_tensors(attr.g, f" (in a subgraph of node '{node.name or node.op_type}')")
            for g in attr.graphs:
                yield from iter_tensors(g, f" (in a subgraph of node '{node.name or node.op_type}')")


def tensor_problem(tensor: onnx.TensorProto) -> str | None:
    """Why the stored data of ``tensor`` does not match its declared dtype and shape (None: it does).

    Checks what the ONNX checker does not: a known element type, non-negative dims within
    :data:`MAX_TENSOR_ELEMENTS`, and the byte/entry count of ``raw_data`` or the typed field against the shape.
    Tensors with external data must have been loaded first; segmented tensors are not checked."""
    if tensor.data_type == TensorProto.UNDEFINED or tensor.data_type not in TensorProto.DataType.values():
        return f"has an undefined element type ({tensor.data_type})"
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        return f"has negative dimensions {dims}"
    elements = 1
    for d in dims:
        elements *= d
    if elements > MAX_TENSOR_ELEMENTS:
        return f"declares {elements} elements (shape {dims}), more than any model holds"
    if tensor.HasField("segment") or tensor.data_location == TensorProto.EXTERNAL:
        return None
    dtype_name = TensorProto.DataType.Name(tensor.data_type).lower()
    if tensor.HasField("raw_data") or tensor.raw_data:
        if tensor.data_type == TensorProto.STRING:
            return "is a string tensor stored as raw bytes (not allowed)"
        if tensor.data_type in _PACKED_4BIT:
            expected = (elements + 1) // 2
        else:
            expected = elements * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        if len(tensor.raw_data) != expected:
            return (f"holds {len(tensor.raw_data)} bytes of data, but its shape {dims} of {dtype_name} needs "
                    f"{expected}")
        return None
    field, per = _FIELD_OF.get(tensor.data_type, ("int32_data", 1))
    if tensor.data_type in _PACKED_4BIT:
        expected = (elements + 1) // 2
    else:
        expected = elements * per
    have = len(getattr(tensor, field))
    if have != expected and not (elements == 0 and have == 0):
        return f"holds {have} values in {field}, but its shape {dims} of {dtype_name} needs {expected}"
    return None


def model_tensor_problem(proto: onnx.ModelProto) -> str | None:
    """The first stored tensor of ``proto`` whose data does not match its dtype and shape, described."""
    for where, tensor in iter_tensors(proto.graph):
        problem = tensor_problem(tensor)
        if problem is not None:
            return f"{where} {problem}"
    return None


def fully_checkable(proto: onnx.ModelProto) -> bool:
    """Whether :func:`checker_problem` checks ``proto`` with full shape inference in memory (no sparse
    initializers, under the protobuf size limit)."""
    return not len(proto.graph.sparse_initializer) and proto.ByteSize() <= _PROTO_LIMIT


def checker_problem(model: onnx.ModelProto | str | os.PathLike, *, full_check: bool = True) -> str | None:
    """What ``onnx.checker.check_model(..., full_check=True)`` rejects in ``model`` (a proto or a file path)."""
    try:
        if isinstance(model, onnx.ModelProto):
            if model.ByteSize() > _PROTO_LIMIT:
                return None  # too large to check in memory; the written file is checked from disk
            onnx.checker.check_model(model, full_check=full_check)
        else:
            onnx.checker.check_model(os.fspath(model), full_check=full_check)
    except Exception as exc:  # ValidationError, InferenceError, and the C++ errors it wraps
        return _first_line(exc)
    return None


def onnxruntime_problem(model: onnx.ModelProto | str | os.PathLike) -> str | None:
    """Why ONNX Runtime cannot create a session for the model (a file or a proto; None: it can). Nothing runs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    try:
        if isinstance(model, onnx.ModelProto):
            if model.ByteSize() > _PROTO_LIMIT:
                return None  # too large to hand over in memory; written files are checked from disk
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        else:
            ort.InferenceSession(os.fspath(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return _first_line(exc)
    return None


def written_file_problem(path: str | os.PathLike) -> str | None:
    """Problem of a written ONNX file: the checker's, else ONNX Runtime's (None: both accept it).

    Files with ``sparse_initializer`` weights (``--sparse-storage``) get the structural checker without shape
    inference: ONNX's shape inference cannot type an op input that is a sparse tensor (it fails on every such
    file, while ONNX Runtime densifies them at load and runs them), so the ORT load is what checks them fully."""
    header = onnx.load(os.fspath(path), load_external_data=False)
    problem = checker_problem(Path(path), full_check=not len(header.graph.sparse_initializer))
    if problem is not None and not function_body_false_alarm(onnx.load(os.fspath(path)), problem, checker_problem):
        return f"the ONNX checker rejects it: {problem}"
    problem = onnxruntime_problem(path)
    if problem is not None:
        return f"ONNX Runtime cannot load it: {problem}"
    return None


def output_check(original: onnx.ModelProto, passes: Callable[[], Sequence]) -> Callable[[Path], None]:
    """A ``check`` for :func:`sparseforge.ir.save.save_model`: raises if the written file is not valid.

    ``original``: the model as loaded; ``passes``: makes the pipeline that turned it into the output (re-run only to
    name the culprit). An invalid output of an input that was invalid too (accepted with ``--allow-invalid-input``,
    or one the checker accepts but ONNX Runtime cannot load) is the user's problem (exit 2); an invalid output of a
    valid input is a sparseforge bug (exit 3), named by pass."""

    def check(path: Path) -> None:
        problem = written_file_problem(path)
        if problem is None:
            return
        input_problem = checker_problem(original) or onnxruntime_problem(original)
        if input_problem is not None:
            raise InvalidModelError(f"the output is not valid ONNX ({problem}); the input model was not valid "
                                    f"either ({input_problem}); nothing was written",
                                    hint="fix or re-export the input model")
        culprit = first_invalidating_pass(original, passes(), lambda p, model: p(model))
        when = f"after pass {culprit}" if culprit else "when it was written (no pass left it invalid in memory)"
        raise InternalError(f"the output became invalid ONNX {when}: {problem}; nothing was written")

    return check


def first_invalidating_pass(original: onnx.ModelProto, passes: Sequence, apply: Callable) -> str | None:
    """Name of the first pass after which ``original`` no longer passes the checker (None: all keep it valid).

    ``apply(pass, model)`` runs one pass on an ``onnx_ir.Model``. Used only to explain a failure, so it re-runs the
    passes on a fresh copy of the model."""
    model = ir.from_proto(onnx.load_from_string(original.SerializeToString()))
    for p in passes:
        apply(p, model)
        if checker_problem(ir.to_proto(model)) is not None:
            return getattr(p, "pass_name", None) or getattr(p, "name", None) or type(p).__name__
    return None
