"""Numerical comparisons with ONNX Runtime as the reference.

:func:`compare` runs two models on the same seeded random inputs and reports the largest absolute error and the
error relative to the reference output's magnitude (``max|y - y_ref| / max(max|y_ref|, tiny)``), per output.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from sparseforge.errors import InternalError, UnsupportedModelError

#: Default tolerance for exact rewrites in fp32 (relative to the output magnitude).
EXACT_RTOL = 1e-5
#: Default tolerance of compiled code against ONNX Runtime in fp32 (other summation orders, fast exp/erf).
COMPILED_RTOL = 1e-4
#: Default tolerance of a rewrite through the FFT (FftConv) in fp32: its rounding grows with ``|x| |w| log2 N``,
#: not with the output, and outputs are sums of many cancelling terms.
FFT_RTOL = 1e-4
#: Tolerances follow the dtype: half-precision outputs carry ~3 decimal digits.
_HALF_RTOL = 1e-2


def default_rtol(dtypes, fp32: float = EXACT_RTOL) -> float:
    """The tolerance for outputs of these NumPy dtype names: ``fp32`` for float32/float64 (and integer outputs),
    1e-2 if any output is float16/bfloat16."""
    return max((_HALF_RTOL if str(d) in ("float16", "bfloat16") else fp32 for d in dtypes), default=fp32)


def output_dtypes(model: ir.Model | onnx.ModelProto) -> list[str]:
    """NumPy dtype names of the graph outputs of ``model``."""
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    names = []
    for out in proto.graph.output:
        elem = out.type.tensor_type.elem_type
        if elem == onnx.TensorProto.BFLOAT16:
            names.append("bfloat16")
        elif elem:
            names.append(onnx.helper.tensor_dtype_to_np_dtype(elem).name)
    return names


@dataclasses.dataclass
class OutputError:
    name: str
    max_abs: float
    max_rel: float


@dataclasses.dataclass
class Comparison:
    outputs: list[OutputError]
    rtol: float

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.rtol

    def to_dict(self) -> dict:
        return {"max_abs_error": self.max_abs, "max_rel_error": self.max_rel, "rtol": self.rtol, "ok": self.ok,
                "outputs": [dataclasses.asdict(o) for o in self.outputs]}


_NP_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def session(model: ir.Model | onnx.ModelProto, threads: int = 1):
    """An ONNX Runtime CPU session for ``model`` (in memory; large models go through a temporary file)."""
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else model
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if proto.ByteSize() < (1 << 31) - (1 << 24):
        return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(proto, path, save_as_external_data=True, location="model.data")
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def random_inputs(sess, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs for every input of an ORT session (standard normal floats, small ints)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sess.get_inputs():
        shape = inp.shape
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise UnsupportedModelError(f"input '{inp.name}' has dynamic dimensions {shape}",
                                        hint=f"fix them with --shape {inp.name}=D0,D1,...")
        dtype = _NP_TYPES.get(inp.type)
        if dtype is None:
            raise UnsupportedModelError(f"input '{inp.name}' has type {inp.type}, which --verify cannot generate")
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[inp.name] = rng.random(shape) < 0.5
        else:
            feeds[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def compare(reference: ir.Model | onnx.ModelProto, candidate: ir.Model | onnx.ModelProto, *,
            rtol: float = EXACT_RTOL, seed: int = 0, inputs: Mapping[str, np.ndarray] | None = None,
            runs: int = 2) -> Comparison:
    """Run both models in ONNX Runtime on ``runs`` random input sets and compare every output.

    ONNX Runtime failing on ``reference`` is the input's problem (``UnsupportedModelError``, exit 2); failing on
    ``candidate`` only is a bug in the rewrite that made it (``InternalError``, exit 3)."""
    ref = _guarded(lambda: session(reference), "load the input model", UnsupportedModelError)
    cand = _guarded(lambda: session(candidate), "load the rewritten model", InternalError)
    names = [o.name for o in ref.get_outputs()]
    cand_names = [o.name for o in cand.get_outputs()]
    errors: dict[str, OutputError] = {}
    for run in range(runs if inputs is None else 1):
        feeds = dict(inputs) if inputs is not None else random_inputs(ref, seed + run)
        y_ref = _guarded(lambda: ref.run(None, feeds), "run the input model", UnsupportedModelError)
        cand_feeds = {k: v for k, v in feeds.items() if k in {i.name for i in cand.get_inputs()}}
        y = _guarded(lambda: cand.run(None, cand_feeds), "run the rewritten model", InternalError)
        for name, cname, a, b in zip(names, cand_names, y_ref, y):
            err = output_error(cname, np.asarray(a), np.asarray(b))
            prev = errors.get(name)
            if prev is None or err.max_rel > prev.max_rel:
                errors[name] = err
    return Comparison(list(errors.values()), rtol)


def _guarded(fn, what: str, error: type[Exception]):
    """``fn()``; an ONNX Runtime failure becomes ``error`` saying what could not be done (one line)."""
    try:
        return fn()
    except (UnsupportedModelError, InternalError):
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
        raise error(f"ONNX Runtime cannot {what}: {first}") from None


def output_error(name: str, reference: np.ndarray, value: np.ndarray) -> OutputError:
    if reference.shape != value.shape:
        return OutputError(name, float("inf"), float("inf"))
    ref = reference.astype(np.float64)
    diff = np.abs(value.astype(np.float64) - ref)
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    if np.isnan(diff).any() and not np.array_equal(np.isnan(ref), np.isnan(value.astype(np.float64))):
        return OutputError(name, float("inf"), float("inf"))
    scale = float(np.nanmax(np.abs(ref))) if ref.size else 0.0
    return OutputError(name, max_abs, max_abs / max(scale, 1e-30) if max_abs else 0.0)
