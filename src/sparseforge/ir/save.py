"""Writing models: atomically, never over the input, optionally with sparse initializers.

``sparse_storage=True`` stores a weight as an ONNX COO ``sparse_initializer`` (values plus int64 linear indices,
as the ONNX spec requires) when that is smaller than the dense tensor (below about 1/3 density for fp32). ONNX
Runtime densifies such weights at load, so the file still runs there; some other tools (onnx-ir, TVM's importer,
OpenVINO) cannot read them, which is why it is opt-in.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper

from sparseforge.errors import OutputPathError

#: Only tensors with at least this many elements are considered for sparse storage.
SPARSE_MIN_ELEMENTS = 64
_PROTO_LIMIT = (1 << 31) - (1 << 26)


def check_output_path(output: str | os.PathLike, inputs: tuple[str | os.PathLike | None, ...] = ()) -> Path:
    """Fail early, before any work, if ``output`` cannot be written or would overwrite an input."""
    out = Path(output)
    if out.is_dir():
        raise OutputPathError("is a directory", where=str(out), hint="give a file name such as model_opt.onnx")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise OutputPathError(f"the folder '{parent}' does not exist", where=str(out),
                              hint="create it first or choose another output path")
    try:  # a real probe: permission bits say nothing for root or read-only file systems
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise OutputPathError(f"cannot write in '{parent}' ({exc.strerror})", where=str(out),
                              hint="choose a writable location with -o") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputPathError("the existing file is read-only", where=str(out), hint="choose another path with -o")
    for src in inputs:
        if src is not None and Path(src).exists() and Path(src).resolve() == out.resolve():
            raise OutputPathError("the output would overwrite the input model", where=str(out),
                                  hint="write to a new file with -o")
    return out


def to_sparse_storage(proto: onnx.ModelProto) -> int:
    """Move initializers that are smaller as COO into ``graph.sparse_initializer``; returns how many moved."""
    graph = proto.graph
    keep, moved = [], 0
    graph_inputs = {i.name for i in graph.input}
    for tensor in graph.initializer:
        if tensor.name in graph_inputs or tensor.data_location == onnx.TensorProto.EXTERNAL:
            keep.append(tensor)
            continue
        array = numpy_helper.to_array(tensor)
        if array.size < SPARSE_MIN_ELEMENTS or not np.issubdtype(array.dtype, np.floating):
            keep.append(tensor)
            continue
        flat = np.flatnonzero(array.reshape(-1))
        sparse_bytes = flat.size * (array.itemsize + 8)
        if sparse_bytes >= array.nbytes:
            keep.append(tensor)
            continue
        values = numpy_helper.from_array(array.reshape(-1)[flat], tensor.name)
        indices = numpy_helper.from_array(flat.astype(np.int64), f"{tensor.name}_indices")
        graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, list(array.shape)))
        moved += 1
    del graph.initializer[:]
    graph.initializer.extend(keep)
    # a value_info entry still typing a moved weight as a dense tensor contradicts its sparse type: the ONNX
    # checker (full shape inference) rejects such a file
    sparse_names = {s.values.name for s in graph.sparse_initializer}
    kept_info = [v for v in graph.value_info if v.name not in sparse_names]
    if len(kept_info) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
    return moved


def save_model(model: ir.Model | onnx.ModelProto, output: str | os.PathLike, *, sparse_storage: bool = False,
               check: Callable[[Path], None] | None = None) -> int:
    """Write ``model`` to ``output`` atomically (temporary file + rename); returns the file size in bytes.

    Models above the 2 GB protobuf limit get their weights in ``<output>.data`` next to the file. ``check`` is
    called on the written temporary file before it is moved into place; if it raises, nothing is written.
    """
    out = Path(output)
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    if sparse_storage:
        to_sparse_storage(proto)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if str(out.parent) else ".")
    os.close(fd)
    data_name = f"{out.name}.data"
    tmp_data = None
    new_data = None
    try:
        if proto.ByteSize() > _PROTO_LIMIT:
            tmp_data = Path(tmp).with_suffix(".data")
            onnx.save(proto, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=tmp_data.name)
            # re-point the locations to the final data file name
            saved = onnx.load(tmp, load_external_data=False)
            for t in onnx.external_data_helper._get_all_tensors(saved):  # noqa: SLF001 - onnx helper
                for entry in t.external_data:
                    if entry.key == "location":
                        entry.value = data_name
            with open(tmp, "wb") as f:
                f.write(saved.SerializeToString())
            if not (out.parent / data_name).exists():
                new_data = out.parent / data_name
            os.replace(tmp_data, out.parent / data_name)
        else:
            with open(tmp, "wb") as f:
                f.write(proto.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a saved model is an ordinary file
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, out)
        new_data = None
    except OSError as exc:
        raise OutputPathError(f"writing failed: {exc.strerror}", where=str(out)) from None
    finally:
        for leftover in (tmp, tmp_data, new_data):
            if leftover is not None and os.path.exists(leftover):
                os.unlink(leftover)
    return out.stat().st_size
