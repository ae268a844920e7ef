"""Frontends: every supported input becomes one ``onnx_ir.Model``.

Supported inputs (:func:`load`):

* an ``.onnx`` file; external data must lie inside the model's folder; ``sparse_initializer`` entries are
  densified on load (onnx-ir silently drops them otherwise);
* a PyTorch ``nn.Module`` with example inputs (``torch.export`` then ``torch.onnx.export(..., dynamo=True)``);
* a ``.pt2`` file written by ``torch.export.save`` (loaded without unpickling anything: pickled payloads are
  refused);
* ``path/to/file.py:factory`` where ``factory()`` returns ``(module, example_inputs)``;
* an ``onnx.ModelProto`` or an ``onnx_ir.Model``.

Anything else raises :class:`~sparseforge.errors.ModelLoadError` with a message saying what to do.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper

from sparseforge.errors import InvalidModelError, ModelLoadError, UnsupportedModelError
from sparseforge.ir.expand import function_body_false_alarm
from sparseforge.ir import keys
from sparseforge.ir.validate import checker_problem, fully_checkable, model_tensor_problem

logger = logging.getLogger(__name__)

#: Default opset for models exported from PyTorch.
TORCH_EXPORT_OPSET = 20


def load(source: Any, example_inputs: Any = None, *, input_shapes: Mapping[str, Sequence[int]] | None = None,
         allow_invalid: bool = False, freeze_initializer_inputs: bool = False) -> ir.Model:
    """Load ``source`` (see module docstring) as an ``onnx_ir.Model``.

    ``input_shapes`` fixes the shapes of named graph inputs (needed for ONNX files with dynamic dimensions).
    ONNX inputs the ONNX checker (full shape inference) rejects are refused with its message, before any work,
    unless ``allow_invalid`` (then a warning says what is wrong and the outputs are still checked).
    Graph inputs that have an initializer are constants for IR version < 4 (as in ONNX Runtime); from IR 4 on
    they are overridable inputs unless ``freeze_initializer_inputs`` (then their initializer is the value).
    """
    model = _load_any(source, example_inputs, allow_invalid)
    if freeze_initializer_inputs:
        freeze_initializer_inputs_of(model)
    if input_shapes:
        set_input_shapes(model, input_shapes)
    if freeze_initializer_inputs or input_shapes:
        model.meta.pop(keys.META_CHECKED, None)  # changed after the check: CheckWeights checks again
    return model


def _load_any(source: Any, example_inputs: Any, allow_invalid: bool = False) -> ir.Model:
    if isinstance(source, ir.Model):
        return source
    if isinstance(source, onnx.ModelProto):
        # the IR shares tensors with the proto it was read from: renaming a weight would rename the caller's
        copy = onnx.ModelProto()
        copy.CopyFrom(source)
        problem = check_input(copy, "<ModelProto>", allow_invalid)
        return _checked(_from_proto(copy, "<ModelProto>"), problem is None and fully_checkable(copy))
    if _is_torch_module(source):
        if example_inputs is None:
            raise ModelLoadError(
                "a PyTorch module needs example inputs",
                where=type(source).__name__,
                hint="call sparseforge.load(module, (example_tensor, ...))",
            )
        return from_torch(source, example_inputs)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        factory = _split_factory_spec(text)
        if factory is not None:
            return load_factory(*factory)
        path = Path(text)
        if not path.exists():
            raise ModelLoadError("no such file", where=text,
                                 hint="give an .onnx or .pt2 file, or file.py:factory")
        if path.is_dir():
            raise ModelLoadError("is a directory, not a model file", where=text,
                                 hint="give the .onnx file inside it")
        if path.suffix == ".pt2":
            return load_pt2(path)
        if path.suffix == ".py":
            raise ModelLoadError("a Python file needs a factory name", where=text,
                                 hint=f"write {text}:FACTORY where FACTORY() returns (module, example_inputs)")
        return load_onnx(path, allow_invalid=allow_invalid)
    raise ModelLoadError(
        f"cannot load an object of type {type(source).__name__}",
        hint="give an .onnx/.pt2 path, file.py:factory, an nn.Module with example inputs, or an onnx.ModelProto",
    )


# ----------------------------------------------------------------------------------------------- ONNX files


def check_input(proto: onnx.ModelProto, where: str, allow_invalid: bool = False) -> str | None:
    """Refuse a model the ONNX checker rejects (``InvalidModelError``), or with ``allow_invalid`` warn and return
    the problem. Returns None for a valid model."""
    # stored tensors first: everything after this (the checker's shape inference included) reads their data
    problem = model_tensor_problem(proto)
    if problem is not None:
        raise InvalidModelError(f"the model is malformed: {problem}", where=where,
                                hint="the file is corrupted or was written by a broken exporter; re-export it")
    # ONNX's shape inference cannot type sparse-initializer inputs (see ir/validate.py): structural check for those
    problem = checker_problem(proto, full_check=not len(proto.graph.sparse_initializer))
    if problem is None or function_body_false_alarm(proto, problem, checker_problem):
        return None
    if not allow_invalid:
        raise InvalidModelError(f"the input model is not valid ONNX: {problem}", where=where,
                                hint="fix or re-export the model; --allow-invalid-input goes on anyway (outputs "
                                     "are still checked)")
    logger.warning("%s: the input model is not valid ONNX (%s); going on as --allow-invalid-input asks", where,
                   problem)
    return problem


def load_onnx(path: str | os.PathLike, *, allow_invalid: bool = False) -> ir.Model:
    """Read an ONNX file, validating external data paths, checking the model and densifying sparse initializers."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelLoadError(f"cannot read the file ({exc.strerror})", where=str(path)) from None
    if not data:
        raise ModelLoadError("the file is empty", where=str(path), hint="give a valid .onnx model file")
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelLoadError(
            f"not a valid ONNX model (truncated or another format: {type(exc).__name__})",
            where=str(path), hint="re-export the model, or check that the download/copy completed") from None
    if not proto.HasField("graph") or proto.ir_version == 0:
        raise ModelLoadError("not an ONNX model (no graph or IR version in the file)", where=str(path),
                             hint="re-export the model, or check that the download/copy completed")
    _load_external_data(proto, path.parent.resolve(), str(path))
    problem = check_input(proto, str(path), allow_invalid)
    return _checked(_from_proto(proto, str(path)), problem is None and fully_checkable(proto))


def _checked(model: ir.Model, checked: bool) -> ir.Model:
    if checked:
        model.meta[keys.META_CHECKED] = True
    return model


def _iter_graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _iter_graph_tensors(attr.g)
            for g in attr.graphs:
                yield from _iter_graph_tensors(g)


def _load_external_data(proto: onnx.ModelProto, base_dir: Path, where: str) -> None:
    """Load external tensor data, refusing locations outside ``base_dir``."""
    externals = [t for t in _iter_graph_tensors(proto.graph)
                 if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in externals:
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not location:
            raise ModelLoadError(f"tensor '{tensor.name}' has external data without a location", where=where)
        candidate = Path(location)
        resolved = (base_dir / candidate).resolve()
        if candidate.is_absolute() or not resolved.is_relative_to(base_dir):
            raise ModelLoadError(
                f"tensor '{tensor.name}' points to external data outside the model's folder ({location})",
                where=where,
                hint="sparseforge only reads external data stored next to the model; move the data file "
                     "into the model's folder and use a relative location")
        if not resolved.is_file():
            raise ModelLoadError(
                f"external data file '{location}' of tensor '{tensor.name}' is missing", where=where,
                hint="copy the data file next to the model (same relative path as when it was saved)")
        offset = int(info.get("offset", 0) or 0)
        length = info.get("length")
        size = resolved.stat().st_size
        if offset > size or (length is not None and offset + int(length) > size):
            raise ModelLoadError(
                f"external data file '{location}' is shorter than tensor '{tensor.name}' needs "
                f"(offset {offset}, length {length}, file size {size})", where=where,
                hint="the data file is truncated or belongs to another model")
        onnx.external_data_helper.load_external_data_for_tensor(tensor, str(base_dir))
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def densify_sparse_initializers(graph: onnx.GraphProto) -> int:
    """Replace every ``sparse_initializer`` by an equivalent dense initializer; returns how many."""
    count = 0
    for sparse in list(graph.sparse_initializer):
        dense = sparse_to_dense(sparse)
        graph.initializer.append(numpy_helper.from_array(dense, sparse.values.name))
        count += 1
    del graph.sparse_initializer[:]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                count += densify_sparse_initializers(attr.g)
            for g in attr.graphs:
                count += densify_sparse_initializers(g)
    return count


def sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """Dense NumPy array of an ONNX COO sparse tensor (linear ``[NNZ]`` or ``[NNZ, rank]`` indices)."""
    dims = tuple(int(d) for d in sparse.dims)
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    dense = np.zeros(int(np.prod(dims)) if dims else 1, dtype=values.dtype)
    if indices.size:
        flat = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), dims)
        if flat.min() < 0 or flat.max() >= dense.size:
            raise ModelLoadError(f"sparse initializer '{sparse.values.name}' has indices out of range")
        dense[flat] = values.reshape(-1)
    return dense.reshape(dims)


def initializer_inputs_to_constants(proto: onnx.ModelProto) -> int:
    """Drop graph inputs that only declare an initializer; returns how many.

    Before IR version 4 every initializer had to be listed as a graph input too, and runtimes (ONNX Runtime
    included) treat those as constants; from IR 4 on such an input is an overridable default."""
    names = {t.name for t in proto.graph.initializer}
    keep = [i for i in proto.graph.input if i.name not in names]
    dropped = len(proto.graph.input) - len(keep)
    if dropped:
        del proto.graph.input[:]
        proto.graph.input.extend(keep)
    return dropped


def freeze_initializer_inputs_of(model: ir.Model) -> int:
    """Graph inputs that have an initializer stop being inputs (their initializer is the value); returns how many."""
    frozen = [v for v in model.graph.inputs if v.is_initializer()]
    for value in frozen:
        model.graph.inputs.remove(value)
    if frozen:
        logger.info("%d graph input(s) with an initializer treated as constants: %s", len(frozen),
                    ", ".join(v.name or "?" for v in frozen[:10]))
    return len(frozen)


def _from_proto(proto: onnx.ModelProto, where: str) -> ir.Model:
    if proto.ir_version < 4:
        dropped = initializer_inputs_to_constants(proto)
        if dropped:
            logger.info("%s: IR version %d lists %d initializer(s) as graph inputs; treated as constants (the model "
                        "is carried on as IR version 4, which no longer requires the listing)", where,
                        proto.ir_version, dropped)
            proto.ir_version = 4
    densified = densify_sparse_initializers(proto.graph)
    if densified:
        logger.info("densified %d sparse initializer(s) of %s", densified, where)
    try:
        model = ir.from_proto(proto)
    except Exception as exc:
        raise ModelLoadError(f"the ONNX model is malformed: {exc}", where=where) from None
    if len(model.graph) == 0:
        raise UnsupportedModelError("the graph has no nodes", where=where,
                                    hint="nothing to analyse: export the model's computation, not just weights")
    return model


# ----------------------------------------------------------------------------------------------- PyTorch


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _as_tuple(example_inputs: Any) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """Silence the exporter's progress prints and warnings (they are not the user's concern)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def from_torch(module: Any, example_inputs: Any) -> ir.Model:
    """Trace ``module`` with ``torch.export`` and convert it with ``torch.onnx.export(dynamo=True)``.

    If that fails, the exporter's fallback (``dynamo=False``, the TorchScript exporter) is tried, with a warning;
    if both fail, the error gives the root cause of each (not the exporter's generic advice)."""
    import torch  # optional dependency

    args = _as_tuple(example_inputs)
    name = type(module).__name__
    module = module.eval()
    try:
        with _quiet_torch_export(), torch.no_grad():
            exported = torch.export.export(module, args)
    except Exception as exc:
        first = ModelLoadError(f"torch.export could not trace the module: {root_cause(exc)}", where=name,
                               hint="make the forward pass traceable (no data-dependent Python control flow)")
    else:
        try:
            return from_exported_program(exported, name)
        except ModelLoadError as exc:
            first = exc
    try:
        model = _from_torchscript_export(module, args, name)
    except Exception as exc:
        message = exc.what if isinstance(exc, ModelLoadError) else root_cause(exc)
        raise ModelLoadError(f"{first.what}; the fallback exporter (dynamo=False) failed too: {message}",
                             where=name, hint=first.hint) from None
    logger.warning("%s: the dynamo exporter failed (%s); exported with the TorchScript exporter (dynamo=False) "
                   "instead, so layer names are that exporter's", name, first.what)
    return model


def _from_torchscript_export(module: Any, args: tuple, where: str) -> ir.Model:
    """The fallback: ``torch.onnx.export(..., dynamo=False)`` into memory, then the ONNX path."""
    import torch  # optional dependency

    buffer = io.BytesIO()
    with _quiet_torch_export(), torch.no_grad():
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=min(TORCH_EXPORT_OPSET, 18))
    proto = onnx.load_from_string(buffer.getvalue())
    check_input(proto, where)
    return _from_proto(proto, where)


def root_cause(exc: BaseException) -> str:
    """The first line of the innermost exception of a chain (exporters wrap the real cause in generic advice)."""
    seen = set()
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(exc))
        exc = inner
    return f"{type(exc).__name__}: {_first_line(exc)}"


def from_exported_program(exported: Any, where: str) -> ir.Model:
    import torch  # optional dependency

    try:
        with _quiet_torch_export():
            program = torch.onnx.export(exported, dynamo=True, opset_version=TORCH_EXPORT_OPSET,
                                        verbose=False, optimize=False)
    except Exception as exc:
        raise ModelLoadError(f"torch.onnx.export failed: {root_cause(exc)}", where=where,
                             hint="the module uses an operator or pattern the ONNX exporter cannot handle; the "
                                  "cause above comes from the exporter") from None
    model = program.model
    if len(model.graph) == 0:
        raise UnsupportedModelError("the traced graph has no nodes", where=where)
    adopt_torch_names(model)
    return model


_GENERIC_NAME = re.compile(r"^(val|node)_\d+$|^node_[A-Za-z]+_\d+$")


def _torch_layer_name(node: ir.Node) -> str | None:
    """The PyTorch name of the layer a weight node came from, e.g. ``encoder.layers.0.linear1``."""
    scopes_text = node.metadata_props.get("pkg.torch.onnx.name_scopes")
    if not scopes_text:
        return None
    try:
        scopes = ast.literal_eval(scopes_text)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or len(scopes) < 2:
        return None
    module, call = str(scopes[-2]), str(scopes[-1])
    fx_node = node.metadata_props.get("pkg.torch.onnx.fx_node", "")
    params = re.findall(r"%p_([A-Za-z0-9_]+?)_weight\b", fx_node)
    if params and module:
        flat = module.replace(".", "_")
        if params[0] == flat:
            return module
        if params[0].startswith(flat + "_"):
            return f"{module}.{params[0][len(flat) + 1:]}"
    if not module:
        return None
    return f"{module}/{call}"


def adopt_torch_names(model: ir.Model) -> None:
    """Name MatMul/Gemm/Conv nodes after the PyTorch layers they came from (``encoder.layers.0.linear1``)."""
    taken = {n.name for n in model.graph}
    for node in model.graph:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or node.domain not in ("", "ai.onnx"):
            continue
        layer = _torch_layer_name(node)
        if layer and layer not in taken:
            taken.discard(node.name)
            node.name = layer
            taken.add(layer)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_PT2_PICKLE_PREFIXES = ("custom_obj_", "opaque_obj_")


def _check_pt2_archive(path: Path) -> None:
    """Refuse ``.pt2`` archives whose loading would unpickle anything."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ModelLoadError("not a torch.export archive (not a zip file)", where=str(path),
                             hint="write it with torch.export.save(exported_program, path)") from None
    with archive:
        names = archive.namelist()
        if not any(n.endswith("models/model.json") or "/models/" in n for n in names):
            raise ModelLoadError("not a torch.export archive (no serialized program inside)", where=str(path),
                                 hint="write it with torch.export.save(exported_program, path)")
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if base.startswith(_PT2_PICKLE_PREFIXES) or (name.endswith(".pt") and "/data/weights/" in name) \
                    or (name.endswith(".pt") and "/data/constants/" in name):
                raise ModelLoadError(
                    f"the archive holds a pickled object ({name}); sparseforge never unpickles user files",
                    where=str(path), hint="export plain tensors only, or convert the model to ONNX yourself")
            if name.endswith("_config.json") and ("/data/weights/" in name or "/data/constants/" in name):
                config = json.loads(archive.read(name))
                for key, meta in config.get("config", {}).items():
                    if meta.get("use_pickle"):
                        raise ModelLoadError(
                            f"tensor '{key}' is stored pickled; sparseforge never unpickles user files",
                            where=str(path), hint="save plain (non-subclass) tensors with torch.export.save")


@contextlib.contextmanager
def _torch_load_weights_only() -> Iterator[None]:
    """Force ``torch.load(..., weights_only=True)`` for everything torch.export.load reads."""
    import torch

    original = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


def load_pt2(path: str | os.PathLike) -> ir.Model:
    """Load a ``torch.export.save`` archive without unpickling, then convert it to ONNX."""
    import torch

    path = Path(path)
    _check_pt2_archive(path)
    try:
        with _quiet_torch_export(), _torch_load_weights_only():
            exported = torch.export.load(str(path))
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"torch.export.load failed: {_first_line(exc)}", where=str(path),
                             hint="re-save it with torch.export.save from PyTorch 2.13") from None
    return from_exported_program(exported, str(path))


# ----------------------------------------------------------------------------------------------- factories


def _split_factory_spec(text: str) -> tuple[str, str] | None:
    """``"dir/file.py:factory"`` -> ``("dir/file.py", "factory")``; anything else -> None."""
    if ":" not in text:
        return None
    file_part, _, func = text.rpartition(":")
    if file_part.endswith(".py") and func.isidentifier():
        return file_part, func
    return None


def call_python(file: str, function_name: str, error=ModelLoadError) -> Any:
    """Import the Python file ``file`` and return ``function_name()`` (errors as ``error``, no traceback)."""
    where = f"{file}:{function_name}"
    path = Path(file)
    if not path.is_file():
        raise error("no such Python file", where=where)
    module_name = f"_sparseforge_factory_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise error("cannot import the Python file", where=where)
    py_module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(py_module)
    except Exception as exc:
        raise error(f"importing the file failed: {type(exc).__name__}: {_first_line(exc)}", where=where) from None
    finally:
        sys.path.pop(0)
    function = getattr(py_module, function_name, None)
    if not callable(function):
        available = sorted(n for n, v in vars(py_module).items() if callable(v) and not n.startswith("_"))
        raise error(f"the file has no function '{function_name}'", where=where,
                    hint=f"functions defined there: {', '.join(available) or 'none'}")
    try:
        return function()
    except Exception as exc:
        raise error(f"the function raised {type(exc).__name__}: {_first_line(exc)}", where=where) from None


def _run_factory(file: str, factory_name: str) -> tuple[Any, Any]:
    """Import ``file`` and call ``factory_name()``; it must return ``(torch module, example_inputs)``."""
    result = call_python(file, factory_name)
    if not (isinstance(result, tuple) and len(result) == 2 and _is_torch_module(result[0])):
        raise ModelLoadError("the factory must return (torch.nn.Module, example_inputs)",
                             where=f"{file}:{factory_name}",
                             hint="e.g. return model.eval(), (torch.randn(1, 3, 224, 224),)")
    return result


def load_factory(file: str, factory_name: str) -> ir.Model:
    """Run ``factory_name()`` from the Python file ``file``; it must return ``(module, example_inputs)``."""
    module, args = _run_factory(file, factory_name)
    return from_torch(module, args)


def torch_source(source: Any, example_inputs: Any = None) -> tuple[Any, tuple] | None:
    """``(module, example_args)`` when ``source`` is PyTorch (a module, a factory spec or a .pt2); else None."""
    if _is_torch_module(source):
        return source.eval(), _as_tuple(example_inputs)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        factory = _split_factory_spec(text)
        if factory is not None:
            module, args = _run_factory(*factory)
            return module.eval(), _as_tuple(args)
        if text.endswith(".pt2") and Path(text).is_file():
            import torch

            _check_pt2_archive(Path(text))
            with _quiet_torch_export(), _torch_load_weights_only():
                exported = torch.export.load(text)
            args = exported.example_inputs[0] if exported.example_inputs else ()
            return exported.module(), tuple(args)
    return None


# ----------------------------------------------------------------------------------------------- shapes


def parse_shape_overrides(specs: Sequence[str]) -> dict[str, list[int]]:
    """Parse ``["x=1,3,224,224", ...]`` into ``{"x": [1, 3, 224, 224]}``."""
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        try:
            values = [int(d) for d in dims.split(",")] if sep else None
        except ValueError:
            values = None
        if not name or values is None or any(v <= 0 for v in values):
            raise UnsupportedModelError(f"bad --shape value '{spec}'",
                                        hint="write NAME=D0,D1,... with positive integers, e.g. x=1,3,224,224")
        shapes[name] = values
    return shapes


def set_input_shapes(model: ir.Model, shapes: Mapping[str, Sequence[int]]) -> None:
    """Fix the shapes of named graph inputs and forget inferred intermediate shapes (re-inferred later)."""
    inputs = {v.name: v for v in model.graph.inputs}
    for name, dims in shapes.items():
        if name not in inputs:
            raise UnsupportedModelError(f"--shape names '{name}', which is not a graph input",
                                        hint=f"graph inputs: {', '.join(inputs) or 'none'}")
        value = inputs[name]
        if value.shape is not None and len(value.shape) != len(dims):
            raise UnsupportedModelError(
                f"--shape gives {len(dims)} dimensions for '{name}', which has rank {len(value.shape)}")
        value.shape = ir.Shape(list(dims))
    keep = set(id(v) for v in model.graph.inputs) | set(id(v) for v in model.graph.initializers.values())
    for node in model.graph:
        for out in node.outputs:
            if id(out) not in keep and out.shape is not None and not out.shape.is_static():
                out.shape = None


def require_static_shapes(model: ir.Model, where: str = "model") -> None:
    """Raise a clear error if a graph input is not a tensor, or has a dynamic or unknown dimension."""
    for value in model.graph.inputs:
        if value.is_initializer():
            continue
        if value.type is not None and not isinstance(value.type, ir.TensorType):
            kind = type(value.type).__name__.replace("Type", "").lower() or "non-tensor"
            raise UnsupportedModelError(
                f"input '{value.name}' is a {kind} ({value.type}); sparseforge takes tensor inputs only",
                where=where, hint="export the model with tensor inputs (e.g. one input per sequence element)")
        if value.shape is None:
            raise UnsupportedModelError(
                f"input '{value.name}' has an unknown shape", where=where,
                hint=f"give it with --shape {value.name}=D0,D1,...")
        if not value.shape.is_static():
            dims = ",".join(str(d) for d in value.shape)
            raise UnsupportedModelError(
                f"input '{value.name}' has dynamic dimensions [{dims}]; sparseforge compiles static shapes",
                where=where, hint=f"fix them with --shape {value.name}=" +
                ",".join(str(d) if isinstance(d, int) else "N" for d in value.shape))
