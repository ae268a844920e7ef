"""Binding graph inputs to fixed values: ``compile --bind NAME=VALUES``.

Static compilation needs shape-like inputs (Reshape/Expand shapes, Reduce axes, Slice starts, Resize sizes...) to
be known; a model that takes them as graph inputs can only be compiled for one value of them. :func:`bind_inputs`
turns each named graph input into an initializer holding that value, in the input's declared dtype and shape
(values are never rounded or wrapped: a value the dtype cannot hold exactly is refused). The record it returns goes
into the artifact's manifest (``bound_inputs``); at run time the artifact accepts the bound value again and refuses
any other (:mod:`sparseforge.runtime.artifact`), so a binding can never silently change a result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from sparseforge.errors import UnsupportedModelError

#: A bound value is recorded in the manifest; larger tensors are refused (binding is for shape-like parameters).
MAX_BOUND_ELEMENTS = 1 << 16


def parse_bindings(texts: Sequence[str], base: Path | None = None) -> dict[str, np.ndarray]:
    """``["axes=1", "shape=2,3,-1", "scales=@scales.npy"]`` (the CLI's ``--bind``) as arrays by input name.

    Comma-separated numbers give a 1-D array (one number: a 0-d array, reshaped later to the declared shape);
    ``@FILE.npy`` reads an array from a NumPy file (never unpickled)."""
    values: dict[str, np.ndarray] = {}
    for text in texts:
        name, sep, spec = text.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise UnsupportedModelError(f"--bind '{text}' is not NAME=VALUES",
                                        hint="write NAME=V0,V1,... or NAME=@values.npy, e.g. --bind axes=1")
        if name in values:
            raise UnsupportedModelError(f"--bind names '{name}' twice")
        values[name] = _read_file(spec[1:], base) if spec.startswith("@") else _parse_numbers(name, spec)
    return values


def _parse_numbers(name: str, spec: str) -> np.ndarray:
    parts = [p.strip() for p in spec.split(",")]
    numbers: list[int | float] = []
    for part in parts:
        try:
            numbers.append(int(part))
        except ValueError:
            try:
                numbers.append(float(part))
            except ValueError:
                raise UnsupportedModelError(f"--bind {name}: '{part}' is not a number",
                                            hint="write NAME=V0,V1,... or NAME=@values.npy") from None
    array = np.asarray(numbers, dtype=object)
    return array.reshape(()) if len(numbers) == 1 else array


def _read_file(path_text: str, base: Path | None) -> np.ndarray:
    path = Path(path_text)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"cannot read the bound value: {exc}", where=str(path),
                                    hint="write it with numpy.save(path, array)") from None


def _exact(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` in ``dtype``: integers and bools refused if any element changes (1.5 -> int, 300 -> uint8);
    floats rounded to the nearest value of the type, as a decimal literal is (0.1 -> float32), refused if a finite
    value overflows."""
    source = np.asarray(value)
    if dtype.kind == "f":
        try:
            wide = np.array(source.tolist(), dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            wide = None
        if wide is not None:
            with np.errstate(over="ignore"):
                converted = wide.astype(dtype)
            if not np.any(np.isfinite(wide) & ~np.isfinite(converted)):
                return converted
        raise UnsupportedModelError(f"--bind {name}: the values do not fit the input's dtype {dtype}",
                                    hint=f"give values representable as {dtype}")
    try:
        converted = source.astype(dtype) if source.dtype != object else np.array(source.tolist(), dtype=dtype)
    except (OverflowError, ValueError, TypeError):
        converted = None
    if converted is not None:
        back = np.array(source.tolist(), dtype=object) if source.ndim else np.array(source.item(), dtype=object)
        same = all(_same(a, b) for a, b in zip(np.ravel(back).tolist(), np.ravel(converted).tolist()))
        if same:
            return converted
    raise UnsupportedModelError(f"--bind {name}: the values cannot be held exactly by the input's dtype {dtype}",
                                hint=f"give values representable as {dtype}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _shaped(name: str, array: np.ndarray, declared: ir.Shape | None) -> np.ndarray:
    """``array`` in the declared shape: same element count for a static one, matching static dims otherwise."""
    if declared is None:
        return array
    if declared.is_static():
        dims = [int(d) for d in declared]
        if array.size != math.prod(dims):
            raise UnsupportedModelError(f"--bind {name}: {array.size} values given, the input has shape {dims} "
                                        f"({math.prod(dims)} values)")
        return array.reshape(dims)
    if array.ndim != len(declared) or any(isinstance(d, int) and d != n for d, n in zip(declared, array.shape)):
        if len(declared) == 1 and array.ndim == 0:
            return array.reshape(1)
        dims = ",".join(str(d) for d in declared)
        raise UnsupportedModelError(f"--bind {name}: shape {list(array.shape)} does not fit the input's [{dims}]",
                                    hint="give the value as an .npy file of the right shape")
    return array


def bind_inputs(model: ir.Model, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Turn the named graph inputs of ``model`` into initializers holding ``values`` (in place).

    Returns ``{name: {"dtype", "shape", "values"}}`` for the manifest. Refuses (exit 2) names that are not graph
    inputs, non-tensor or non-numeric inputs, values the dtype cannot hold exactly, shapes that do not fit, and
    values over :data:`MAX_BOUND_ELEMENTS` elements."""
    graph = model.graph
    inputs = {v.name: v for v in graph.inputs}
    record: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if name not in inputs:
            raise UnsupportedModelError(f"--bind names '{name}', which is not a graph input",
                                        hint=f"graph inputs: {', '.join(inputs) or 'none'}")
        target = inputs[name]
        if not isinstance(target.type, ir.TensorType) or target.dtype is None:
            raise UnsupportedModelError(f"--bind {name}: only tensor inputs of a known dtype can be bound")
        try:
            dtype = target.dtype.numpy()
        except (TypeError, ValueError, NotImplementedError):
            dtype = None
        if dtype is None or dtype.kind not in "biuf":
            raise UnsupportedModelError(f"--bind {name}: inputs of dtype {target.dtype} cannot be bound",
                                        hint="bind numeric (bool, integer, float) inputs only")
        array = _shaped(name, _exact(name, value, dtype), target.shape)
        if array.size > MAX_BOUND_ELEMENTS:
            raise UnsupportedModelError(f"--bind {name}: {array.size} values; binding is for shape-like inputs of "
                                        f"at most {MAX_BOUND_ELEMENTS} values")
        graph.inputs.remove(target)
        target.shape = ir.Shape(list(array.shape))
        target.const_value = ir.tensor(np.require(array, requirements="C"), name=name)  # 0-d stays 0-d
        if name not in graph.initializers:
            graph.register_initializer(target)
        record[name] = {"dtype": str(dtype), "shape": list(array.shape), "values": array.tolist()}
    return record


def check_bound(name: str, given: Any, bound: Mapping[str, Any]) -> str | None:
    """Why ``given`` for the bound input ``name`` differs from its bound value (None: it is the same value)."""
    expected = np.asarray(bound["values"], dtype=np.dtype(bound["dtype"])).reshape(bound["shape"])
    array = np.asarray(given)
    if expected.dtype.kind == "f" and array.dtype.kind in "fiu":
        array = array.astype(expected.dtype)  # rounded as at binding time (0.1 given as float64)
    same = array.size == expected.size and np.array_equal(
        array.reshape(expected.shape), expected, equal_nan=expected.dtype.kind == "f" and array.dtype.kind == "f")
    if same:
        return None
    shown = array.tolist() if array.size <= 16 else f"an array of shape {list(array.shape)}"
    return f"input '{name}' was bound at compile time to {expected.tolist()}; got {shown}"
