"""Calibration data for approximate steps: read, checked against the model's inputs, split, batched.

Sources (the CLI's ``--calibration``):

* ``data.npz``: one array per model input, by input name, first axis = samples; a sample is the input without its
  batch (first) dimension (read with ``allow_pickle=False``: never unpickled);
* ``file.py:loader``: ``loader()`` returns the same mapping (name -> array);
* ``random`` or ``random:N``: N (default 64) seeded standard-normal samples, with a warning: pruning for random
  inputs is not pruning for your data.

Every input must be given, nothing else; shapes must match the model's static dims, dtypes its kind (float, int,
bool), values be finite, and there must be at least one sample. The model runs ``batch`` samples at a time (its
static batch size); a remainder smaller than a batch is left out. The last ``holdout`` fraction of the samples
(whole batches) is kept for the accuracy report and never used to prune.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx_ir as ir

from sparseforge.errors import SparseforgeError
from sparseforge.ir.frontend import call_python

DEFAULT_RANDOM_SAMPLES = 64
DEFAULT_HOLDOUT = 0.25


class CalibrationDataError(SparseforgeError):
    """Calibration data that does not fit the model."""


@dataclasses.dataclass
class CalibrationData:
    """Samples per input name (``[S, ...]``, model dtypes), run ``batch`` at a time."""

    arrays: dict[str, np.ndarray]
    batch: int
    source: str
    random: bool = False

    @property
    def samples(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0]) if self.arrays else 0

    @property
    def runs(self) -> int:
        return self.samples // self.batch

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of ``batch`` samples each (the remainder left out)."""
        for r in range(self.runs):
            yield {name: a[r * self.batch:(r + 1) * self.batch] for name, a in self.arrays.items()}

    def split(self, holdout: float) -> tuple[CalibrationData, CalibrationData | None]:
        """(calibration part, held-out part): the last ``holdout`` fraction of the runs, at least one run when
        ``holdout > 0``; None when ``holdout == 0``."""
        if not 0.0 <= holdout < 1.0:
            raise CalibrationDataError(f"--holdout must be in [0, 1), got {holdout}")
        if holdout == 0.0:
            return self, None
        held = max(1, int(round(self.runs * holdout)))
        if self.runs - held < 1:
            raise CalibrationDataError(
                f"{self.samples} sample(s) make {self.runs} run(s) of {self.batch}: too few to keep {holdout:g} "
                "for the accuracy report", where=self.source,
                hint="give more samples, or --holdout 0 to use them all (no held-out accuracy report)")
        cut = (self.runs - held) * self.batch
        end = self.runs * self.batch
        first = {n: a[:cut] for n, a in self.arrays.items()}
        second = {n: a[cut:end] for n, a in self.arrays.items()}
        return (CalibrationData(first, self.batch, self.source, self.random),
                CalibrationData(second, self.batch, self.source + " (held out)", self.random))


def model_inputs(model: ir.Model) -> dict[str, ir.Value]:
    """The graph inputs that are not initializers, by name."""
    return {v.name: v for v in model.graph.inputs if v.name not in model.graph.initializers}


def _batch_size(inputs: Mapping[str, ir.Value]) -> int:
    sizes = set()
    for value in inputs.values():
        shape = value.shape
        if shape is not None and len(shape) and isinstance(shape[0], int):
            sizes.add(int(shape[0]))
    return max(sizes) if sizes else 1


def load(spec: str, model: ir.Model, *, seed: int = 0) -> CalibrationData:
    """Read ``spec`` (see the module docstring) and check it against ``model``'s inputs."""
    inputs = model_inputs(model)
    batch = _batch_size(inputs)
    text = str(spec)
    if text == "random" or text.startswith("random:"):
        count = DEFAULT_RANDOM_SAMPLES
        if text != "random":
            try:
                count = int(text.split(":", 1)[1])
            except ValueError:
                raise CalibrationDataError(f"bad sample count in '{text}'", hint="write random:N, e.g. random:64")
        return check(_random(inputs, max(count, batch), seed), inputs, batch, text, random=True)
    file_part, _, func = text.rpartition(":")
    if file_part.endswith(".py") and func.isidentifier():
        data = call_python(file_part, func, error=CalibrationDataError)
        if not isinstance(data, Mapping):
            raise CalibrationDataError(f"the loader returned {type(data).__name__}, not a mapping of input name "
                                       "to array", where=text, hint="return {'input_name': array[S, ...], ...}")
        return check(dict(data), inputs, batch, text)
    path = Path(text)
    if not path.is_file():
        raise CalibrationDataError("no such calibration file", where=text,
                                   hint="give an .npz of arrays by input name, FILE.py:LOADER, or random")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise CalibrationDataError("not a readable .npz file (not a zip archive)", where=text,
                                   hint="write it with numpy.savez(path, input_name=array)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        raise CalibrationDataError(f"cannot read it without unpickling ({exc})", where=text,
                                   hint="save plain numeric arrays with numpy.savez") from None
    except (OSError, EOFError) as exc:
        raise CalibrationDataError(f"not a readable .npz file ({exc})", where=text,
                                   hint="write it with numpy.savez(path, input_name=array)") from None
    return check(data, inputs, batch, text)


def _random(inputs: Mapping[str, ir.Value], count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in inputs.items():
        shape = tuple(int(d) if isinstance(d, int) else 1 for d in (value.shape or ()))[1:]
        dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else np.dtype(np.float32)
        if dtype.kind == "f":
            out[name] = rng.standard_normal((count, *shape)).astype(dtype)
        elif dtype == np.bool_:
            out[name] = rng.random((count, *shape)) < 0.5
        else:
            out[name] = rng.integers(0, 2, size=(count, *shape)).astype(dtype)
    return out


def check(data: Mapping[str, object], inputs: Mapping[str, ir.Value], batch: int, source: str, *,
          random: bool = False) -> CalibrationData:
    """Validate ``data`` against the model's inputs; the arrays converted to the input dtypes."""
    missing = [n for n in inputs if n not in data]
    extra = [n for n in data if n not in inputs]
    if missing or extra:
        parts = ([f"missing {', '.join(repr(n) for n in missing)}"] if missing else []) + \
                ([f"not model inputs: {', '.join(repr(n) for n in extra)}"] if extra else [])
        raise CalibrationDataError("calibration arrays do not match the model's inputs (" + "; ".join(parts) + ")",
                                   where=source, hint=f"the model's inputs are: {', '.join(inputs) or 'none'}")
    arrays: dict[str, np.ndarray] = {}
    counts = set()
    for name, value in inputs.items():
        array = np.asarray(data[name])
        if array.dtype == object:
            raise CalibrationDataError(f"input '{name}' is not a numeric array", where=source)
        shape = list(value.shape) if value.shape is not None else None
        if shape is not None:
            expected = shape[1:] if len(shape) else []
            if array.ndim != len(expected) + 1 or any(isinstance(d, int) and int(d) != s
                                                      for d, s in zip(expected, array.shape[1:])):
                want = "x".join(str(d) if isinstance(d, int) else "?" for d in expected)
                raise CalibrationDataError(
                    f"input '{name}' has shape {list(array.shape)}; expected [samples, {want.replace('x', ', ')}]"
                    if want else f"input '{name}' has shape {list(array.shape)}; expected [samples]",
                    where=source, hint="the first axis counts samples; the rest is the model input without its "
                                       "batch dimension")
        dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else array.dtype
        kinds_ok = (array.dtype.kind == dtype.kind or (array.dtype.kind in "iu" and dtype.kind in "iu")
                    or (dtype.kind == "f" and array.dtype.kind in "iu"))
        if not kinds_ok:
            raise CalibrationDataError(f"input '{name}' has dtype {array.dtype}; the model takes {dtype}",
                                       where=source)
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise CalibrationDataError(f"input '{name}' holds NaN or infinite values", where=source)
        arrays[name] = np.ascontiguousarray(array.astype(dtype, copy=False))
        counts.add(array.shape[0])
    if len(counts) > 1:
        raise CalibrationDataError(f"inputs have different sample counts {sorted(counts)}", where=source)
    count = counts.pop() if counts else 0
    if count == 0:
        raise CalibrationDataError("no samples", where=source, hint="give at least one sample per input")
    if count < batch:
        raise CalibrationDataError(f"{count} sample(s), fewer than the model's batch size {batch}", where=source)
    return CalibrationData(arrays, batch, source, random)
