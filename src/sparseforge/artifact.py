"""The artifact format: what ``sparseforge compile`` writes and everything else reads.

An artifact is a folder::

    OUTDIR/
      manifest.json    format + version, inputs/outputs (names, shapes, dtypes), target, passes applied,
                       per-layer decisions, the sparse kernels emitted, the files below, compile time
      model.onnx       the optimized ONNX model it was built from (ai.sparseforge ops included; ORT runs it)
      model.so         x86 / arm / cuda: the compiled Relax VM executable (TVM runtime library)
      model.wasm, model.mjs   wasm: a self-contained WebAssembly module and its ES-module loader

It is written into a temporary folder next to ``OUTDIR`` and renamed into place (:func:`write_atomically`), so a
failed compile leaves nothing behind; an existing ``OUTDIR`` is replaced only if it is an earlier sparseforge
artifact (or empty). This module has no TVM or ONNX Runtime dependency.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from sparseforge.errors import ModelLoadError, OutputPathError

MANIFEST = "manifest.json"
LIBRARY = "model.so"
ONNX_FILE = "model.onnx"
FORMAT = "sparseforge-artifact"
VERSION = 1


def value_spec(value: onnx.ValueInfoProto) -> dict[str, Any]:
    """``{"name", "shape", "dtype"}`` of a graph input or output (static shapes)."""
    t = value.type.tensor_type
    return {"name": value.name, "shape": [int(d.dim_value) for d in t.shape.dim],
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}


def io_specs(model: onnx.ModelProto) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Input specs (initializers excluded) and output specs of ``model``."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [value_spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [value_spec(v) for v in model.graph.output]


def example_arrays(manifest: dict[str, Any], seed: int = 0) -> list[np.ndarray]:
    """Seeded random inputs matching the manifest's input specs (in input order)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in manifest["inputs"]:
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(spec["shape"]).astype(dtype))
        else:
            arrays.append(rng.integers(0, 2, size=spec["shape"]).astype(dtype))
    return arrays


def read_manifest(outdir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the artifact in ``outdir``; a clear error if it is not one."""
    outdir = Path(outdir)
    if not outdir.exists():
        raise ModelLoadError("no such artifact folder", where=str(outdir), hint="compile one with `sparseforge compile`")
    if not outdir.is_dir() or not (outdir / MANIFEST).is_file():
        raise ModelLoadError("not a sparseforge artifact (no manifest.json)", where=str(outdir),
                             hint="give the folder written by `sparseforge compile -o`")
    try:
        manifest = json.loads((outdir / MANIFEST).read_text())
    except ValueError as exc:
        raise ModelLoadError(f"manifest.json is not valid JSON ({exc})", where=str(outdir)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelLoadError("manifest.json is not a sparseforge artifact manifest", where=str(outdir))
    return manifest


def write_manifest(outdir: Path, manifest: dict[str, Any]) -> None:
    (Path(outdir) / MANIFEST).write_text(json.dumps(manifest, indent=1))


def check_outdir(outdir: str | os.PathLike) -> Path:
    """``outdir`` as a Path if an artifact may be written there (new, empty, or an earlier artifact)."""
    out = Path(outdir)
    if out.exists():
        if not out.is_dir():
            raise OutputPathError("exists and is not a folder", where=str(out),
                                  hint="give a new folder name (the artifact is a folder)")
        contents = list(out.iterdir())
        if contents and not (out / MANIFEST).is_file():
            raise OutputPathError("is a non-empty folder that is not a sparseforge artifact; not overwriting it",
                                  where=str(out), hint="choose a new or empty folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"the folder '{parent}' does not exist", where=str(out),
                              hint="create it first or choose another output path")
    try:
        probe = tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputPathError(f"cannot write in '{parent}' ({exc.strerror})", where=str(out),
                              hint="choose a writable location with -o") from None
    return out


def write_atomically(out: Path, fill: Callable[[Path], None]) -> None:
    """Call ``fill(tmpdir)`` on a fresh folder next to ``out``, then move it to ``out`` (replacing an old one).

    If ``fill`` raises, nothing is left behind and ``out`` is unchanged."""
    parent = out.parent if str(out.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as exc:
        raise OutputPathError(f"writing the artifact failed: {exc.strerror or exc}", where=str(out)) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
