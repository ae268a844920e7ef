"""``sparseforge compile``: model -> optimized ONNX -> Relax -> scheduled kernels -> an artifact folder.

The flow: load (any frontend) -> the compile pipeline (:func:`sparseforge.passes.pipelines.compile`: canonicalize,
analyse, shrink dead channels, decide dense/sparse per layer with the target's cost model, rewrite to
``ai.sparseforge`` ops) -> import to Relax with the target's kernel rules -> the target's build -> the artifact
(:mod:`sparseforge.artifact`), written atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from sparseforge import artifact
from sparseforge._version import __version__
from sparseforge.codegen import contract, importer
from sparseforge.codegen._tvm import native_logs_to_debug
from sparseforge.codegen.targets import Target, get_target
from sparseforge.errors import TargetError, UnsupportedOpError
from sparseforge.ir import keys
from sparseforge.ir.bind import bind_inputs
from sparseforge.ir.dump import IRDump, start_instruments
from sparseforge.ir.expand import expand_functions
from sparseforge.ir.frontend import load, require_static_shapes
from sparseforge.ir.save import save_model
from sparseforge.ir.validate import output_check
from sparseforge.passes import pipelines
from sparseforge.passes.infra import PassReport, Pipeline


@dataclasses.dataclass
class CompileResult:
    outdir: Path | None
    manifest: dict[str, Any]
    reports: list[PassReport]
    executable: Any
    original: onnx.ModelProto
    optimized: onnx.ModelProto
    seconds: float

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return self.manifest["decisions"]


class _VerificationFailed(Exception):
    """The finished artifact did not match ONNX Runtime: it is not moved into place."""


@dataclasses.dataclass(frozen=True)
class ResolvedTarget:
    """A target family, the description of one device of it, and the view its kernel builders take."""

    family: Target
    description: Any
    kernel_target: Any


def resolve_target(name: str, threads: int | None = None, *, cpu: str | None = None, arch: str | None = None
                   ) -> ResolvedTarget:
    """The target ``name`` described for ``threads``/``cpu``/``arch``; clear errors for unknown names/options."""
    family = get_target(name)
    if threads is not None and threads < 1:
        raise TargetError(f"--threads must be at least 1, got {threads}")
    description = family.describe(threads=threads or os.cpu_count() or 1, cpu=cpu, arch=arch)
    return ResolvedTarget(family, description, family.kernel_target(description))


def source_label(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def compile_model(source: Any, outdir: str | os.PathLike | None, *, target: str = "x86", threads: int | None = None,
                  dense: bool = False, tune: int = 0, example_inputs: Any = None,
                  input_shapes: Mapping[str, Sequence[int]] | None = None, calibrate: bool = True,
                  cost_model=None, cpu: str | None = None, arch: str | None = None,
                  allow_invalid_input: bool = False, verify=None, bind: Mapping[str, Any] | None = None,
                  freeze_initializer_inputs: bool = False, dump_ir: str | os.PathLike | None = None,
                  instruments: Sequence = (), fuse: bool = True) -> CompileResult:
    """Compile ``source`` for ``target``; writes an artifact to ``outdir`` (None: keep it in memory only).

    ``verify(folder, original) -> report`` (with ``.ok`` and ``.to_dict()``) runs on the finished artifact before
    it is moved into place; its report goes into the manifest, and a failed one leaves nothing written
    (``result.outdir`` is None). ``bind`` fixes graph inputs to values (:func:`sparseforge.ir.bind.bind_inputs`):
    they become constants of the compiled model, recorded in the manifest (``bound_inputs``). ``dump_ir``: a folder
    for the model after every pass, the Relax module before and after sparseforge's passes and the TIR of every
    sparse/structured kernel (:mod:`sparseforge.ir.dump`). ``instruments``: more pipeline instruments (an object
    with a ``start(model)`` method is told the model before the first pass). ``fuse``: cross-layer fusion (a sparse
    1x1 expansion with the depthwise conv after it, :mod:`sparseforge.codegen.fusion`)."""
    start = time.perf_counter()
    out = artifact.check_outdir(outdir) if outdir is not None else None
    resolved = resolve_target(target, threads, cpu=cpu, arch=arch)
    family, description = resolved.family, resolved.description
    model = load(source, example_inputs, input_shapes=input_shapes, allow_invalid=allow_invalid_input,
                 freeze_initializer_inputs=freeze_initializer_inputs)
    bound = bind_inputs(model, bind) if bind else {}
    require_static_shapes(model, source_label(source))
    original = ir.to_proto(model)
    expanded = expand_functions(model, importer.lowers)
    if bound or expanded:
        model.meta.pop(keys.META_CHECKED, None)  # changed after the load's check: CheckWeights checks again
    refused = contract.early_refusals(model.graph)
    if refused:
        listing = "; ".join(f"{op} node '{name}': {reason}" for op, name, reason in refused[:20])
        raise UnsupportedOpError(f"outside what sparseforge compiles correctly: {listing}",
                                 hint="export the model with standard ONNX ops (opset 13-21) and tensors only")
    if cost_model is None and not dense:
        cost_model = family.cost_model(description, resolved.kernel_target, measure=calibrate)
    dump, listening = start_instruments(model, dump_ir, instruments)
    reports = Pipeline(pipelines.compile(cost_model, dense=dense), instruments=listening)(model).reports
    optimized = ir.to_proto(model)
    with native_logs_to_debug():  # TVM's C++ warnings go to the log (shown with --debug), not the terminal
        mod, records = importer.from_onnx(optimized, kernel_target=resolved.kernel_target,
                                          rules=family.kernel_rules(description), fuse=fuse)
        if dump is not None:
            _dump_modules(dump, family, description, mod, records)
        executable = family.build(mod, description, tune=tune)
    decide = next(r for r in reports if r.pass_name == "DecideFormat")
    inputs, outputs = artifact.io_specs(optimized)
    manifest = {
        "format": artifact.FORMAT,
        "version": artifact.VERSION,
        "sparseforge": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source_label(source),
        "target": _json_ready(family.facts(description)),
        "mode": "dense" if dense else "sparse",
        "fuse": fuse,
        "library": artifact.LIBRARY,
        "onnx": artifact.ONNX_FILE,
        "inputs": inputs,
        "bound_inputs": bound,
        "outputs": outputs,
        "passes": [r.pass_name for r in reports],
        "expanded_functions": dict(sorted(expanded.items())),
        "decisions": decide.details.get("decisions", []),
        "structured": _with_lowering(pipelines.structured_changes(reports), records),
        "kernels": [dataclasses.asdict(r) for r in records],
    }
    if out is not None:
        def fill(tmp: Path) -> None:
            manifest.update(family.write_artifact(tmp, executable, description=description, optimized=optimized,
                                                  manifest=manifest,
                                                  example_inputs=artifact.example_arrays(manifest)))
            save_model(optimized, tmp / artifact.ONNX_FILE,
                       check=output_check(original, lambda: pipelines.compile(cost_model, dense=dense)))
            manifest["compile_seconds"] = round(time.perf_counter() - start, 2)
            artifact.write_manifest(tmp, manifest)
            if verify is not None:
                report = verify(tmp, original)
                manifest["verify"] = report.to_dict()
                artifact.write_manifest(tmp, manifest)
                if not report.ok:
                    raise _VerificationFailed

        try:
            artifact.write_atomically(out, fill)
        except _VerificationFailed:
            out = None
    manifest.setdefault("compile_seconds", round(time.perf_counter() - start, 2))
    return CompileResult(out, manifest, reports, executable, original, optimized, time.perf_counter() - start)


def _dump_modules(dump: IRDump, family, description, mod, records) -> None:
    """Relax before and after sparseforge's passes, and the TIR of each of sparseforge's kernels."""
    dump.text("relax-imported", mod.script())
    names = {gv.name_hint for gv in mod.get_global_vars()}
    for record in records:
        if record.kernel in names:
            dump.text(f"tir/{record.kernel}", mod[record.kernel].script(), kind="tir")
    try:
        dump.text("relax-optimized", family.optimized(mod, description).script())
    except Exception as exc:  # noqa: BLE001 - a dump must not stop the compile; the index says why
        dump.skipped("relax-optimized", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")


def _with_lowering(changes: list[dict], records) -> list[dict]:
    """Say so where the target computes a structured op another way (FftConv as a direct conv on CUDA)."""
    direct = {r.node for r in records if r.info.get("variant") == "direct-conv1d"}
    for change in changes:
        if change["node"] in direct:
            change["message"] += "; this target has no FFT kernel: computed as a direct convolution"
    return changes


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
