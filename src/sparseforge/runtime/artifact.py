"""Load and run compiled artifacts: ``sparseforge.runtime.load(OUTDIR)(**inputs) -> {output name: array}``.

Inputs are given by ONNX input name; shapes must match the manifest exactly and float inputs are converted to the
manifest dtype (other conversions are refused). The TVM thread pool is process-wide: ``threads`` resizes it before
every call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sparseforge.errors import ModelLoadError, SparseforgeError

MANIFEST = "manifest.json"


class Artifact:
    """A compiled model loaded from its folder."""

    def __init__(self, outdir: str | Path, threads: int | None = None):
        self.path = Path(outdir)
        self.manifest = read_manifest(self.path)
        if self.manifest["target"]["name"] not in ("x86",):
            raise ModelLoadError(f"artifact for target '{self.manifest['target']['name']}' cannot run on this host",
                                 where=str(self.path), hint="use `sparseforge verify` for cross-target artifacts")
        from sparseforge.codegen import _tvm
        from sparseforge.codegen.pipeline import set_num_threads

        library = self.path / self.manifest["library"]
        if not library.is_file():
            raise ModelLoadError(f"the library '{library.name}' is missing", where=str(self.path),
                                 hint="recompile with `sparseforge compile`")
        try:
            module = _tvm.tvm.runtime.load_module(str(library))
        except Exception as exc:
            raise ModelLoadError(f"cannot load the compiled library: {str(exc).splitlines()[0]}",
                                 where=str(library), hint="recompile on this machine") from None
        self._device = _tvm.cpu_device()
        self._vm = _tvm.relax.VirtualMachine(module, self._device)
        self._set_threads = set_num_threads
        self._to_tensor = _tvm.to_tvm_tensor
        self.threads = threads or self.manifest["target"].get("threads")

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.manifest["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.manifest["outputs"]]

    def prepare(self, inputs: Mapping[str, Any]) -> list:
        """Validate ``inputs`` against the manifest and convert them to TVM tensors (in graph input order)."""
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
        tensors = []
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
            tensors.append(self._to_tensor(np.ascontiguousarray(array), self._device))
        return tensors

    def run_prepared(self, tensors: list) -> Any:
        if self.threads:
            self._set_threads(int(self.threads))
        return self._vm["main"](*tensors)

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        result = self.run_prepared(self.prepare(inputs))
        arrays = _flatten(result)
        return dict(zip(self.output_names, arrays))


def _flatten(result: Any) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [a for item in result for a in _flatten(item)]


def read_manifest(outdir: Path) -> dict[str, Any]:
    if not outdir.exists():
        raise ModelLoadError("no such artifact folder", where=str(outdir), hint="compile one with `sparseforge compile`")
    if not outdir.is_dir() or not (outdir / MANIFEST).is_file():
        raise ModelLoadError("not a sparseforge artifact (no manifest.json)", where=str(outdir),
                             hint="give the folder written by `sparseforge compile -o`")
    try:
        manifest = json.loads((outdir / MANIFEST).read_text())
    except ValueError as exc:
        raise ModelLoadError(f"manifest.json is not valid JSON ({exc})", where=str(outdir)) from None
    if manifest.get("format") != "sparseforge-artifact":
        raise ModelLoadError("manifest.json is not a sparseforge artifact manifest", where=str(outdir))
    return manifest


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
