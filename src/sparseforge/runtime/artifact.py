"""Load and run compiled x86 artifacts: ``sparseforge.runtime.load(OUTDIR)(**inputs) -> {output name: array}``.

Inputs are given by ONNX input name; shapes must match the manifest exactly (0-d inputs included) and float inputs
are converted to the manifest dtype (other conversions are refused). Inputs bound at compile time (``--bind``) may
be given again with their bound value, which is dropped; any other value is refused. The TVM thread pool is process-wide:
``threads`` resizes it before every call. The format itself is :mod:`sparseforge.artifact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparseforge.artifact import read_manifest
from sparseforge.errors import ModelLoadError, SparseforgeError
from sparseforge.ir.bind import check_bound


class Artifact:
    """A compiled model loaded from its folder (host targets only)."""

    def __init__(self, outdir: str | Path, threads: int | None = None):
        from sparseforge.codegen.vm import VMRunner  # TVM is optional: imported when an artifact is loaded

        self.path = Path(outdir)
        self.manifest = read_manifest(self.path)
        if self.manifest["target"]["name"] not in ("x86",):
            raise ModelLoadError(f"artifact for target '{self.manifest['target']['name']}' cannot run on this host",
                                 where=str(self.path), hint="use `sparseforge verify` for cross-target artifacts")
        library = self.path / self.manifest["library"]
        if not library.is_file():
            raise ModelLoadError(f"the library '{library.name}' is missing", where=str(self.path),
                                 hint="recompile with `sparseforge compile`")
        self.threads = threads or self.manifest["target"].get("threads")
        try:
            self._runner = VMRunner(library, threads=int(self.threads) if self.threads else None)
        except Exception as exc:
            raise ModelLoadError(f"cannot load the compiled library: {str(exc).splitlines()[0]}",
                                 where=str(library), hint="recompile on this machine") from None

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.manifest["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.manifest["outputs"]]

    def check_inputs(self, inputs: Mapping[str, Any]) -> list[np.ndarray]:
        """Validate ``inputs`` against the manifest; the arrays in graph input order, in the manifest dtypes."""
        bound = self.manifest.get("bound_inputs", {})
        for name in [n for n in inputs if n in bound]:
            problem = check_bound(name, inputs[name], bound[name])
            if problem is not None:
                raise SparseforgeError(problem, where=str(self.path),
                                       hint=f"recompile with --bind {name}=... for another value")
        inputs = {n: v for n, v in inputs.items() if n not in bound}
        names = set(self.input_names)
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unknown {', '.join(extra)}")
            raise SparseforgeError(f"inputs do not match the model ({'; '.join(parts)})", where=str(self.path),
                                   hint=f"the model's inputs are: {', '.join(self.input_names)}")
        arrays = []
        for spec in self.manifest["inputs"]:
            array = np.asarray(inputs[spec["name"]])
            if list(array.shape) != list(spec["shape"]):
                raise SparseforgeError(f"input '{spec['name']}' has shape {list(array.shape)}, the model was "
                                       f"compiled for {spec['shape']}", where=str(self.path),
                                       hint="recompile with --shape for other shapes")
            dtype = np.dtype(spec["dtype"])
            if array.dtype != dtype:
                if array.dtype.kind == dtype.kind or (array.dtype.kind in "iu" and dtype.kind in "iu"):
                    array = array.astype(dtype)
                else:
                    raise SparseforgeError(f"input '{spec['name']}' has dtype {array.dtype}, expected {dtype}",
                                           where=str(self.path))
            arrays.append(np.require(array, requirements="C"))  # ascontiguousarray would make 0-d arrays 1-d
        return arrays

    def prepare(self, inputs: Mapping[str, Any]) -> list:
        """Checked inputs as device tensors (for repeated runs, e.g. timing)."""
        return self._runner.to_device(self.check_inputs(inputs))

    def run_prepared(self, tensors: list) -> Any:
        return self._runner.run_tensors(tensors)

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._runner(*self.check_inputs(inputs))))


def load(outdir: str | Path, threads: int | None = None) -> Artifact:
    """Load a compiled artifact folder."""
    return Artifact(outdir, threads)


def load_inputs(path: str | Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of inputs keyed by ONNX input name (never unpickles)."""
    p = Path(path)
    if not p.is_file():
        raise SparseforgeError("no such inputs file", where=str(p), hint="give an .npz written by numpy.savez")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:
        raise SparseforgeError(f"cannot read the inputs file: {exc}", where=str(p),
                               hint="write it with numpy.savez(path, name=array, ...)") from None
