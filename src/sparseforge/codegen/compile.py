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
KNOWN_TARGETS = ("x86",)
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


def resolve_targets(target: str, threads: int | None):
    """(CompileTarget, KernelTarget) for a target name; clear error for unknown names."""
    if target not in KNOWN_TARGETS:
        raise TargetError(f"unknown target '{target}'", hint=f"known targets: {', '.join(KNOWN_TARGETS)}")
    from . import kernels as K
    from .target import make_target

    threads = threads or os.cpu_count() or 1
    if threads < 1:
        raise TargetError(f"--threads must be at least 1, got {threads}")
    compile_target = make_target(target, threads)
    config = dict(compile_target.tvm_target().export())
    tvm_dict = {k: v for k, v in config.items() if k in ("kind", "mtriple", "mcpu", "mattr")}
    kernel_target = K.make_target(tvm_dict, threads=threads, lanes=compile_target.vector_lanes)
    return compile_target, kernel_target


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
                  cost_model=None) -> CompileResult:
    """Compile ``source`` for ``target``; writes an artifact to ``outdir`` (None: keep it in memory only)."""
    start = time.perf_counter()
    out = _check_outdir(outdir) if outdir is not None else None
    compile_target, kernel_target = resolve_targets(target, threads)
    model = load(source, example_inputs, input_shapes=input_shapes)
    require_static_shapes(model, os.fspath(source) if isinstance(source, (str, os.PathLike)) else "model")
    original = ir.to_proto(model)
    if cost_model is None and not dense:
        from .calibration import cost_model_for

        cost_model = cost_model_for(compile_target, kernel_target, measure=calibrate)
    reports = optimize_for_target(model, dense=dense, cost_model=cost_model)
    optimized = ir.to_proto(model)

    from . import importer, pipeline

    mod, records = importer.from_onnx(optimized, kernel_target=kernel_target)
    if tune:
        executable = pipeline.tune_and_build(mod, compile_target, trials=tune) \
            if hasattr(pipeline, "tune_and_build") else _no_tuning()
    else:
        executable = pipeline.build(mod, compile_target)
    decide = next(r for r in reports if r.pass_name == "DecideFormat")
    manifest = {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "sparseforge": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__,
        "target": {"name": target, "mcpu": compile_target.mcpu, "threads": compile_target.threads,
                   "vector_lanes": compile_target.vector_lanes,
                   "features": sorted(f for f in compile_target.features if f.startswith(_SIMD_PREFIXES)),
                   "tvm_target": dict(compile_target.tvm_target().export())},
        "mode": "dense" if dense else "sparse",
        "library": LIBRARY,
        "onnx": ONNX_FILE,
        "inputs": [_value_spec(v) for v in optimized.graph.input
                   if v.name not in {t.name for t in optimized.graph.initializer}],
        "outputs": [_value_spec(v) for v in optimized.graph.output],
        "passes": [r.pass_name for r in reports],
        "decisions": decide.details.get("decisions", []),
        "kernels": [dataclasses.asdict(r) for r in records],
        "compile_seconds": round(time.perf_counter() - start, 2),
    }
    manifest = json.loads(json.dumps(manifest, default=_json_default))  # plain JSON types only
    if out is not None:
        _write_artifact(out, executable, optimized, manifest)
    return CompileResult(out, manifest, reports, executable, original, optimized,
                         time.perf_counter() - start)


def _no_tuning():
    raise SparseforgeError("--tune is not available in this build (MetaSchedule tuning is not wired in)",
                           hint="compile without --tune")


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


def _write_artifact(out: Path, executable: Any, optimized: onnx.ModelProto, manifest: dict) -> None:
    from sparseforge.ir.save import save_model

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else "."))
    try:
        executable.export_library(str(tmp / LIBRARY))
        save_model(optimized, tmp / ONNX_FILE)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
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
