"""Python API behind the CLI: inspect, export, prune, compile, verify, run, bench and calibrate.

Each model-taking function takes anything :func:`sparseforge.load` accepts (or an already loaded
``onnx_ir.Model``) and returns a result object with the reports; none of them prints. The CLI uses only this
module and the renderer. ``compile``/``verify``/``run``/``bench``/``calibrate`` need TVM (``pip install
'sparseforge[tvm]'``); without it they raise a :class:`~sparseforge.errors.MissingDependencyError` naming the
install command.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from sparseforge.errors import MissingDependencyError, SparseforgeError, VerificationError
from sparseforge.ir import keys
from sparseforge.ir.bind import parse_bindings as _parse_bindings
from sparseforge.ir.dump import start_instruments
from sparseforge.ir.frontend import load, parse_shape_overrides, require_static_shapes
from sparseforge.ir.save import check_output_path, save_model
from sparseforge.ir.stats import ModelStats, model_stats
from sparseforge.ir.validate import output_check
from sparseforge.passes import pipelines
from sparseforge.passes.analysis import WeightStructure
from sparseforge.passes.infra import PassReport, Pipeline
from sparseforge.passes.rewrites.prune import PruneConfig, PrunePass, prune_config_from_options
from sparseforge.runtime.artifact import load as load_artifact
from sparseforge.runtime.artifact import load_inputs
from sparseforge.runtime.compare import EXACT_RTOL, FFT_RTOL, Comparison, compare, default_rtol, output_dtypes


def _source_label(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _file_size(source: Any) -> int | None:
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file() and Path(source).suffix == ".onnx":
        return Path(source).stat().st_size
    return None


def _load(source: Any, example_inputs: Any, input_shapes: Mapping[str, Sequence[int]] | None,
          allow_invalid_input: bool = False, freeze_initializer_inputs: bool = False) -> ir.Model:
    model = load(source, example_inputs, input_shapes=input_shapes, allow_invalid=allow_invalid_input,
                 freeze_initializer_inputs=freeze_initializer_inputs)
    require_static_shapes(model, _source_label(source))
    return model


@dataclasses.dataclass
class InspectResult:
    model: ir.Model
    layers: list[WeightStructure]
    reports: list[PassReport]
    stats: ModelStats
    attention: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        total = sum(layer.shape[0] * layer.shape[1] for layer in self.layers)
        nonzero = sum(layer.density * layer.shape[0] * layer.shape[1] for layer in self.layers)
        return {
            "weights": len(self.layers),
            "weight_elements": total,
            "density": nonzero / total if total else 0.0,
            "layers_with_dead_output_channels": sum(1 for l in self.layers if l.dead_output_channels),
            "dead_output_channels": sum(len(l.dead_output_channels) for l in self.layers),
            "dead_input_channels": sum(len(l.dead_input_channels) for l in self.layers),
            "layers_2_4": sum(1 for l in self.layers if l.nm.get("2:4", 0) >= 1.0),
            "layers_low_rank": sum(1 for l in self.layers if l.rank is not None and l.rank < min(l.shape)),
            "long_conv_candidates": sum(1 for l in self.layers if l.long_conv),
            "monarch_layers": sum(1 for l in self.layers if l.monarch),
            "sparse_low_rank_layers": sum(1 for l in self.layers if l.sparse_low_rank),
            "attention_cores": len(self.attention),
            "dead_heads": sum(len(a["dead"]) for a in self.attention),
            "parameters": self.stats.parameters,
            "flops": self.stats.flops,
            "nonzero_flops": self.stats.nonzero_flops,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "layers": [l.to_dict() for l in self.layers], "attention": self.attention,
                "passes": [r.to_dict() for r in self.reports]}


def inspect(source: Any, example_inputs: Any = None, *, with_rank: bool = True, max_svd_dim: int = 2048,
            input_shapes: Mapping[str, Sequence[int]] | None = None, allow_invalid_input: bool = False,
            freeze_initializer_inputs: bool = False) -> InspectResult:
    """Canonicalize and analyse every weight of ``source``."""
    model = _load(source, example_inputs, input_shapes, allow_invalid_input, freeze_initializer_inputs)
    result = Pipeline(pipelines.analysis(with_rank=with_rank, max_svd_dim=max_svd_dim))(model)
    analysis = result.report("StructureAnalysis")
    layers = [WeightStructure(**_structure_fields(d)) for d in analysis.details["layers"]]
    return InspectResult(model, layers, result.reports, model_stats(model), analysis.details.get("attention", []))


def _structure_fields(d: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(WeightStructure)}
    out = {k: v for k, v in d.items() if k in fields}
    out["shape"] = tuple(out["shape"])
    out["stored_shape"] = tuple(out["stored_shape"])
    out["kernel_shape"] = tuple(out["kernel_shape"])
    return out


@dataclasses.dataclass
class ExportResult:
    output: Path
    before: ModelStats
    after: ModelStats
    reports: list[PassReport]
    comparison: Comparison | None

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "before": self.before.to_dict(), "after": self.after.to_dict(),
                "passes": [r.to_dict() for r in self.reports],
                "verify": self.comparison.to_dict() if self.comparison else None}


def _write_verified(model: ir.Model, original: onnx.ModelProto, output: Path, *, verify: bool, rtol: float | None,
                    sparse_storage: bool) -> tuple[int, Comparison | None]:
    """Write to a temporary file, verify it if asked, and only then move it to ``output``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".onnx", dir=output.parent)
    os.close(fd)
    try:
        size = save_model(model, tmp, sparse_storage=sparse_storage, check=output_check(original, pipelines.export))
        comparison = None
        if verify:
            if rtol is None:  # FFT convolutions round like compiled code, not like an exact rewrite
                fft = any(n.domain == keys.DOMAIN and n.op_type == "FftConv" for n in model.graph)
                rtol = default_rtol(output_dtypes(original), FFT_RTOL if fft else EXACT_RTOL)
            comparison = compare(original, onnx.load(tmp), rtol=rtol)
            if not comparison.ok:
                raise VerificationError(
                    f"the rewritten model differs from the original: max relative error {comparison.max_rel:.3g} "
                    f"(tolerance {rtol:g}); nothing was written", where=str(output),
                    hint="please report this model; run without the failing pass or raise --rtol to inspect it")
        os.replace(tmp, output)
        return size, comparison
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export(source: Any, output: str | os.PathLike, example_inputs: Any = None, *, verify: bool = False,
           sparse_storage: bool = False, rtol: float | None = None,
           input_shapes: Mapping[str, Sequence[int]] | None = None, allow_invalid_input: bool = False,
           freeze_initializer_inputs: bool = False, dump_ir: str | os.PathLike | None = None,
           instruments: Sequence = ()) -> ExportResult:
    """Canonicalize, shrink dead channels and write an optimized ONNX file that ONNX Runtime runs. ``dump_ir``: a
    folder for the model after every pass that changed it, with an index (:mod:`sparseforge.ir.dump`);
    ``instruments``: more pipeline instruments (one with ``start(model)`` is told the model first)."""
    out = check_output_path(output, (source if isinstance(source, (str, os.PathLike)) else None,))
    model = _load(source, example_inputs, input_shapes, allow_invalid_input, freeze_initializer_inputs)
    original = ir.to_proto(model)
    before = model_stats(model, _file_size(source))
    _, listening = start_instruments(model, dump_ir, instruments)
    result = Pipeline(pipelines.export(), instruments=listening)(model)
    size, comparison = _write_verified(model, original, out, verify=verify, rtol=rtol,
                                       sparse_storage=sparse_storage)
    return ExportResult(out, before, model_stats(model, size), result.reports, comparison)


@dataclasses.dataclass
class PruneResult:
    output: Path
    before: ModelStats
    after: ModelStats
    reports: list[PassReport]
    output_deviation: Comparison | None
    #: with calibration data: {"source", "random", "calibration_samples", "heldout_samples"}
    calibration: dict[str, Any] | None = None
    #: per output on the held-out samples: relative_l2, cosine, max_abs (top1_agreement for classifiers)
    accuracy: list[dict[str, Any]] | None = None
    #: per pruned layer: relative output (reconstruction) error on the calibration inputs
    layer_errors: dict[str, float] | None = None

    @property
    def prune_report(self) -> PassReport:
        return next(r for r in self.reports if r.pass_name == "Prune")

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "before": self.before.to_dict(), "after": self.after.to_dict(),
                "layers": self.prune_report.details["layers"],
                "relative_weight_error": self.prune_report.details["relative_weight_error"],
                "output_deviation": self.output_deviation.to_dict() if self.output_deviation else None,
                "calibration": self.calibration, "accuracy": self.accuracy, "layer_errors": self.layer_errors,
                "approximate": True, "passes": [r.to_dict() for r in self.reports]}


def prune(source: Any, output: str | os.PathLike, config: PruneConfig, example_inputs: Any = None, *,
          input_shapes: Mapping[str, Sequence[int]] | None = None, allow_invalid_input: bool = False,
          freeze_initializer_inputs: bool = False, calibration: str | None = None,
          holdout: float = 0.25, sequential: bool = False) -> PruneResult:
    """Prune (approximate) and write the model.

    Without ``calibration``: the weight error and the output deviation on random inputs are reported. With
    ``calibration`` (an ``.npz``, ``FILE.py:LOADER`` or ``random[:N]``, see
    :mod:`sparseforge.driver.calibration_data`): the data methods (Wanda, SparseGPT) use its first part, and the
    last ``holdout`` part gives the accuracy report (every output's error on held-out samples). ``sequential``:
    the data methods prune stage by stage, each stage's statistics collected from the model with the earlier
    stages pruned (one calibration pass per stage). The input is never overwritten."""
    config.validate()
    if sequential and not config.needs_data:
        raise SparseforgeError(f"--sequential applies to --method wanda or sparsegpt, not to --method {config.method}",
                               hint="drop --sequential")
    if config.needs_data and calibration is None:
        raise SparseforgeError(f"--method {config.method} needs calibration data",
                               hint="--calibration data.npz (arrays by input name, first axis = samples), "
                                    "FILE.py:LOADER, or --calibration random to prune for random inputs")
    sources = (source if isinstance(source, (str, os.PathLike)) else None,
               calibration if calibration and Path(calibration).suffix == ".npz" else None)
    out = check_output_path(output, sources)
    model = _load(source, example_inputs, input_shapes, allow_invalid_input, freeze_initializer_inputs)
    original = ir.to_proto(model)
    before = model_stats(model, _file_size(source))
    if calibration is None:
        result = Pipeline(pipelines.prune(config))(model)
        deviation = compare(original, model, rtol=float("inf"))  # before writing: a failure writes nothing
        size = save_model(model, out, check=output_check(original, lambda: pipelines.prune(config)))
        return PruneResult(out, before, model_stats(model, size), result.reports, deviation)
    from sparseforge.driver import calibrated_prune, calibration_data  # ONNX Runtime flows, no TVM

    data = calibration_data.load(calibration, model)
    fit, held = data.split(holdout)
    canonical = Pipeline(pipelines.canonicalize())(model)
    stats = calibrated_prune.collect_stats(model, fit) if config.needs_data or config.method == "group" else {}
    dense = calibrated_prune.dense_weights(model, stats)
    restats = (lambda m, names: calibrated_prune.collect_stats(m, fit, only=names)) if sequential else None
    pruning = Pipeline([PrunePass(dataclasses.replace(config, stats=stats, restats=restats))])(model)
    reports = [*canonical.reports, *pruning.reports]
    accuracy = calibrated_prune.output_errors(original, ir.to_proto(model), held) if held is not None else None
    errors = calibrated_prune.layer_errors(dense, model, stats) if stats else None
    if data.random:
        pruning.report("Prune").warn("random-calibration", "calibrated on random inputs, not on your data: the "
                                     "accuracy report says how random inputs fare, not how your data will")
    size = save_model(model, out, check=output_check(original, lambda: [*pipelines.canonicalize(),
                                                                          PrunePass(config)]))
    info = {"source": data.source, "random": data.random, "calibration_samples": fit.runs * fit.batch,
            "heldout_samples": held.runs * held.batch if held is not None else 0}
    return PruneResult(out, before, model_stats(model, size), reports, None, info, accuracy, errors)


# ------------------------------------------------------------------------------------------ options


def parse_shapes(shapes: Sequence[str]) -> dict[str, list[int]] | None:
    """``["x=1,3,224,224", ...]`` (the CLI's ``--shape``) as ``{"x": [1, 3, 224, 224]}``; None when empty."""
    return parse_shape_overrides(shapes) if shapes else None


def parse_bindings(bindings: Sequence[str]) -> dict[str, Any] | None:
    """``["axes=1", "scales=@s.npy"]`` (the CLI's ``--bind``) as ``{"axes": array(1), ...}``; None when empty."""
    return _parse_bindings(bindings) if bindings else None


def prune_config(method: str, sparsity: float | None = None, nm: str = "2:4", block: str = "4x1",
                 global_scope: bool = False, skip: Sequence[str] = (), max_weight_error: float | None = None,
                 pattern: str = "unstructured") -> PruneConfig:
    """A :class:`PruneConfig` from the CLI's option values (validated, clear errors)."""
    return prune_config_from_options(method, sparsity, nm, block, global_scope, tuple(skip), max_weight_error,
                                     pattern)


# ------------------------------------------------------------------------------------------ codegen flows


def _driver(name: str):
    """The orchestration module ``name`` (imports TVM; a clear error with the install command without it)."""
    try:
        return importlib.import_module(f"sparseforge.driver.{name}")
    except ImportError as exc:
        if "tvm" not in str(exc).lower():
            raise
        raise MissingDependencyError("Apache TVM is not installed (needed to compile and run models)",
                                     hint="pip install 'sparseforge[tvm]'") from None


def compile(source: Any, output: str | os.PathLike | None, example_inputs: Any = None, *, target: str = "x86",
            threads: int | None = None, dense: bool = False, tune: int = 0, calibrate: bool = True,
            cpu: str | None = None, arch: str | None = None, verify: bool = False, rtol: float | None = None,
            input_shapes: Mapping[str, Sequence[int]] | None = None, cost_model=None,
            allow_invalid_input: bool = False, bind: Mapping[str, Any] | None = None,
            freeze_initializer_inputs: bool = False, dump_ir: str | os.PathLike | None = None,
            instruments: Sequence = (), fuse: bool = True):
    """Compile ``source`` for ``target`` into the artifact folder ``output`` (None: in memory only).

    With ``verify``, the artifact runs where its code runs and is compared with ONNX Runtime on the original model
    (``rtol``: default by output dtype) before it is moved into place; the report is in
    ``result.manifest["verify"]``, and if it fails nothing is written (``result.outdir`` is None). ``bind`` fixes
    graph inputs to values (arrays by input name, see :func:`parse_bindings`); the artifact refuses other values.
    ``dump_ir``: a folder for the IR after every pass, the Relax modules and the kernels' TIR. ``fuse=False``: no
    cross-layer fusion (each layer its own kernel)."""
    verify_fn = None
    if verify:
        def verify_fn(folder, original):
            return verify_artifact(folder, original, rtol=rtol)

    return _driver("compile").compile_model(
        source, output, target=target, threads=threads, dense=dense, tune=tune, example_inputs=example_inputs,
        input_shapes=input_shapes, calibrate=calibrate, cost_model=cost_model, cpu=cpu, arch=arch,
        allow_invalid_input=allow_invalid_input, verify=verify_fn, bind=bind,
        freeze_initializer_inputs=freeze_initializer_inputs, dump_ir=dump_ir, instruments=instruments, fuse=fuse)


def verify_artifact(artifact: str | os.PathLike, reference: onnx.ModelProto | None = None, *,
                    rtol: float | None = None):
    """Run a compiled artifact where its code runs and compare with ONNX Runtime (``reference``: default the
    artifact's own model.onnx; ``rtol``: default by output dtype, 1e-4 for fp32, 1e-2 for fp16/bf16)."""
    return _driver("verify").verify_artifact(artifact, reference, rtol=rtol)


def run(artifact: str | os.PathLike, inputs: Mapping[str, Any] | str | os.PathLike, *,
        output: str | os.PathLike | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run a compiled (x86) artifact on ``inputs`` (arrays by input name, or an ``.npz`` path); with ``output``,
    also write the outputs to that ``.npz`` (atomically, never over the inputs file)."""
    sources = (inputs,) if isinstance(inputs, (str, os.PathLike)) else ()
    out = check_output_path(output, sources) if output is not None else None
    arrays = load_inputs(inputs) if isinstance(inputs, (str, os.PathLike)) else inputs
    outputs = load_artifact(artifact, threads=threads)(**arrays)
    if out is not None:
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=out.parent)
        os.close(fd)
        try:
            np.savez(tmp, **outputs)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return outputs


def bench(source: Any, example_inputs: Any = None, *, target: str = "x86", threads: int = 1, rounds: int = 5,
          repeat: int = 10, sparse: bool = True, rpc: str | None = None, rpc_key: str | None = None,
          cpu: str | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
          allow_invalid_input: bool = False, torch_compile: bool = True, check_scaling: bool = False
          ) -> dict[str, Any]:
    """Median latency of the dense peers and sparseforge (dense and sparse) side by side; JSON-ready dict.
    ``torch_compile``: also time ``torch.compile`` (inductor) for PyTorch sources; ``check_scaling``: with
    ``threads > 1``, time every engine at 1 thread too (``one_thread``)."""
    return _driver("bench").bench(source, target=target, threads=threads, rounds=rounds, repeat=repeat, rpc=rpc,
                                  rpc_key=rpc_key, cpu=cpu, input_shapes=input_shapes, sparse=sparse,
                                  example_inputs=example_inputs, allow_invalid_input=allow_invalid_input,
                                  torch_compile=torch_compile, check_scaling=check_scaling)


def profile(artifact: str | os.PathLike, reference: Any = None, *, repeats: int = 5, rounds: int = 5,
            threads: int | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
            allow_invalid_input: bool = False) -> dict[str, Any]:
    """Measured time per kernel, per layer and per category of a compiled x86 artifact (random inputs); with
    ``reference`` (the model it was compiled from) also ONNX Runtime's latency on it and the measured speedup."""
    proto = None
    if isinstance(reference, ir.Model):
        proto = ir.to_proto(reference)
    elif reference is not None:
        proto = ir.to_proto(_load(reference, None, input_shapes, allow_invalid_input))
    return _driver("profile").profile_artifact(artifact, proto, repeats=repeats, rounds=rounds, threads=threads)


@dataclasses.dataclass
class CompressResult:
    output: Path
    before: ModelStats
    after: ModelStats
    reports: list[PassReport]
    #: layers (level, kernel, layer_error, dense_ms, predicted_ms), predicted_speedup, calibration_error, accuracy
    report: dict[str, Any]
    calibration: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "before": self.before.to_dict(), "after": self.after.to_dict(),
                "approximate": True, "calibration": self.calibration, **self.report}


def compress(source: Any, output: str | os.PathLike, *, calibration: str, target: str = "x86",
             threads: int | None = None, max_output_error: float | None = None, speedup: float | None = None,
             holdout: float = 0.25, example_inputs: Any = None,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             allow_invalid_input: bool = False) -> CompressResult:
    """Per layer, the sparsity (SparseGPT, unstructured levels and 2:4) that minimizes ``target``'s predicted
    latency with the measured output error on the calibration data within ``max_output_error`` (or the least error
    reaching the predicted ``speedup``); writes the model and measures it on the held-out part. APPROXIMATE; see
    :mod:`sparseforge.driver.compress`."""
    out = check_output_path(output, (source if isinstance(source, (str, os.PathLike)) else None,
                                     calibration if Path(calibration).suffix == ".npz" else None))
    flow = _driver("compress")
    flow.check_goal(max_output_error, speedup)
    from sparseforge.driver import calibration_data

    resolved = _driver("compile").resolve_target(target, threads)
    cost_model = resolved.family.cost_model(resolved.description, resolved.kernel_target)
    model = _load(source, example_inputs, input_shapes, allow_invalid_input)
    original = ir.to_proto(model)
    before = model_stats(model, _file_size(source))
    data = calibration_data.load(calibration, model)
    fit, held = data.split(holdout)
    canonical = Pipeline(pipelines.canonicalize())(model)
    report = flow.compress(model, fit, held, cost_model, max_output_error=max_output_error, speedup=speedup)
    size = save_model(model, out, check=output_check(original, lambda: pipelines.canonicalize()))
    info = {"source": data.source, "random": data.random, "calibration_samples": fit.runs * fit.batch,
            "heldout_samples": held.runs * held.batch if held is not None else 0, "target": target}
    return CompressResult(out, before, model_stats(model, size), canonical.reports, report, info)


def explain(source: Any, layer: str, example_inputs: Any = None, *, target: str = "x86",
            threads: int | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
            allow_invalid_input: bool = False, calibrate: bool = True):
    """Every fact of ``layer``'s weight, every structured and sparse candidate with its predicted time and why it
    lost or was not allowed, and what would have to change (see :mod:`sparseforge.driver.explain`)."""
    return _driver("explain").explain(source, layer, target=target, threads=threads, example_inputs=example_inputs,
                                      input_shapes=input_shapes, allow_invalid_input=allow_invalid_input,
                                      calibrate=calibrate)


def calibrate(source: Any, *, target: str = "x86", threads: int | None = None, fresh: bool = False,
              input_shapes: Mapping[str, Sequence[int]] | None = None, allow_invalid_input: bool = False):
    """Measure the kernel timings the decisions of ``source`` need; returns (table, decisions)."""
    return _driver("calibrate").calibrate_model(source, target=target, threads=threads, fresh=fresh,
                                                input_shapes=input_shapes, allow_invalid_input=allow_invalid_input)
