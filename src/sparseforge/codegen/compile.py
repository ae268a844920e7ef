"""``sparseforge compile``: model -> optimized ONNX -> Relax -> scheduled kernels -> a self-describing artifact.

An artifact is a folder::

    OUTDIR/
      model.so         the compiled Relax VM executable (TVM shared library)
      model.onnx       the optimized ONNX model it was built from (ai.sparseforge ops included; ORT runs it)
      manifest.json    inputs/outputs (names, shapes, dtypes), target, passes applied, per-layer decisions,
                       the sparse kernels emitted, versions

It is written to a temporary folder next to ``OUTDIR`` and renamed into place, so a failed compile leaves nothing
behind; an existing ``OUTDIR`` is replaced only if it is an earlier sparseforge artifact (or empty).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from sparseforge import __version__
from sparseforge.errors import OutputPathError, SparseforgeError, TargetError
from sparseforge.ir.frontend import load, require_static_shapes
from sparseforge.passes import pipelines
from sparseforge.passes.infra import PassReport, Pipeline
from sparseforge.passes.shrink_channels import ShrinkChannelsPass
from sparseforge.passes.sparsify import DecideFormatPass, SparsifyPass

MANIFEST = "manifest.json"
LIBRARY = "model.so"
ONNX_FILE = "model.onnx"
ARTIFACT_FORMAT = "sparseforge-artifact"
ARTIFACT_VERSION = 1
_SIMD_PREFIXES = ("sse", "avx", "fma", "f16c", "neon", "asimd", "simd")


@dataclasses.dataclass
class CompileResult:
    outdir: Path | None
    manifest: dict[str, Any]
    reports: list[PassReport]
    executable: Any
    original: onnx.ModelProto
    optimized: onnx.ModelProto
    seconds: float
    verify: Any = None

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return self.manifest["decisions"]


def resolve_targets(target: str, threads: int | None, *, cpu: str | None = None, arch: str | None = None):
    """(backend, target description, kernel target) for a target name; clear error for unknown names."""
    from .targets import get_backend

    backend = get_backend(target)
    if threads is not None and threads < 1:
        raise TargetError(f"--threads must be at least 1, got {threads}")
    description = backend.describe(threads=threads or os.cpu_count() or 1, cpu=cpu, arch=arch)
    return backend, description, backend.kernel_target(description)


def _value_spec(value: onnx.ValueInfoProto) -> dict[str, Any]:
    t = value.type.tensor_type
    return {"name": value.name, "shape": [int(d.dim_value) for d in t.shape.dim],
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}


def optimize_for_target(model: ir.Model, *, dense: bool, cost_model) -> list[PassReport]:
    """Canonicalize, shrink dead channels and (unless ``dense``) rewrite layers to sparse kernels."""
    passes = [*pipelines.canonicalize(), ShrinkChannelsPass(),
              DecideFormatPass(cost_model, dense_only=dense), SparsifyPass()]
    return Pipeline(passes)(model).reports


def compile_model(source: Any, outdir: str | os.PathLike | None, *, target: str = "x86", threads: int | None = None,
                  dense: bool = False, tune: int = 0, example_inputs: Any = None,
                  input_shapes: Mapping[str, Sequence[int]] | None = None, calibrate: bool = True,
                  cost_model=None, cpu: str | None = None, arch: str | None = None) -> CompileResult:
    """Compile ``source`` for ``target``; writes an artifact to ``outdir`` (None: keep it in memory only)."""
    start = time.perf_counter()
    out = _check_outdir(outdir) if outdir is not None else None
    backend, description, kernel_target = resolve_targets(target, threads, cpu=cpu, arch=arch)
    model = load(source, example_inputs, input_shapes=input_shapes)
    require_static_shapes(model, os.fspath(source) if isinstance(source, (str, os.PathLike)) else "model")
    original = ir.to_proto(model)
    if cost_model is None and not dense:
        cost_model = backend.cost_model(description, kernel_target, calibrate=calibrate)
    reports = optimize_for_target(model, dense=dense, cost_model=cost_model)
    optimized = ir.to_proto(model)

    from . import importer

    mod, records = importer.from_onnx(optimized, kernel_target=kernel_target,
                                      builders=backend.kernel_builders(description))
    executable = backend.build(mod, description, tune=tune)
    decide = next(r for r in reports if r.pass_name == "DecideFormat")
    manifest = {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "sparseforge": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__,
        "target": _target_facts(target, description),
        "mode": "dense" if dense else "sparse",
        "library": LIBRARY,
        "onnx": ONNX_FILE,
        "inputs": [_value_spec(v) for v in optimized.graph.input
                   if v.name not in {t.name for t in optimized.graph.initializer}],
        "outputs": [_value_spec(v) for v in optimized.graph.output],
        "passes": [r.pass_name for r in reports],
        "decisions": decide.details.get("decisions", []),
        "kernels": [dataclasses.asdict(r) for r in records],
    }
    if out is not None:
        _write_artifact(out, backend, executable, description, optimized, manifest)
    manifest["compile_seconds"] = round(time.perf_counter() - start, 2)
    if out is not None:
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return CompileResult(out, manifest, reports, executable, original, optimized,
                         time.perf_counter() - start)


def _target_facts(name: str, description: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"name": name}
    for key in ("mcpu", "threads", "vector_lanes", "arch"):
        if hasattr(description, key):
            facts[key] = getattr(description, key)
    if hasattr(description, "features"):
        facts["features"] = sorted(f for f in description.features if f.startswith(_SIMD_PREFIXES))
    facts["tvm_target"] = dict(description.tvm_target().export())
    return json.loads(json.dumps(facts, default=_json_default))


def example_arrays(manifest: dict[str, Any], seed: int = 0) -> list:
    """Seeded random inputs matching the manifest's input specs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = []
    for spec in manifest["inputs"]:
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(spec["shape"]).astype(dtype))
        else:
            arrays.append(rng.integers(0, 2, size=spec["shape"]).astype(dtype))
    return arrays


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _check_outdir(outdir: str | os.PathLike) -> Path:
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


def _write_artifact(out: Path, backend, executable: Any, description: Any, optimized: onnx.ModelProto,
                    manifest: dict) -> None:
    from sparseforge.ir.save import save_model

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else "."))
    try:
        manifest.update(backend.write_artifact(tmp, executable, target=description, optimized=optimized,
                                               manifest=manifest, example_inputs=example_arrays(manifest)))
        save_model(optimized, tmp / ONNX_FILE)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
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
