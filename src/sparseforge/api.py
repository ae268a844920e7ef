"""Python API behind the CLI: inspect, export and prune a model.

Each function takes anything :func:`sparseforge.load` accepts (or an already loaded ``onnx_ir.Model``) and
returns a result object with the reports; none of them prints.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from sparseforge.errors import VerificationError
from sparseforge.ir.frontend import load, require_static_shapes
from sparseforge.ir.save import check_output_path, save_model
from sparseforge.ir.stats import ModelStats, model_stats
from sparseforge.passes import pipelines
from sparseforge.passes.infra import PassReport, Pipeline
from sparseforge.passes.prune import PruneConfig
from sparseforge.passes.structure_analysis import WeightStructure
from sparseforge.runtime.verify import EXACT_RTOL, Comparison, compare


def _source_label(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _file_size(source: Any) -> int | None:
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file() and Path(source).suffix == ".onnx":
        return Path(source).stat().st_size
    return None


def _load(source: Any, example_inputs: Any, input_shapes: Mapping[str, Sequence[int]] | None) -> ir.Model:
    model = load(source, example_inputs, input_shapes=input_shapes)
    require_static_shapes(model, _source_label(source))
    return model


@dataclasses.dataclass
class InspectResult:
    model: ir.Model
    layers: list[WeightStructure]
    reports: list[PassReport]
    stats: ModelStats

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
            "parameters": self.stats.parameters,
            "flops": self.stats.flops,
            "nonzero_flops": self.stats.nonzero_flops,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "layers": [l.to_dict() for l in self.layers],
                "passes": [r.to_dict() for r in self.reports]}


def inspect(source: Any, example_inputs: Any = None, *, with_rank: bool = True, max_svd_dim: int = 2048,
            input_shapes: Mapping[str, Sequence[int]] | None = None) -> InspectResult:
    """Canonicalize and analyse every weight of ``source``."""
    model = _load(source, example_inputs, input_shapes)
    result = Pipeline(pipelines.analysis(with_rank=with_rank, max_svd_dim=max_svd_dim))(model)
    analysis = result.report("StructureAnalysis")
    layers = [WeightStructure(**_structure_fields(d)) for d in analysis.details["layers"]]
    return InspectResult(model, layers, result.reports, model_stats(model))


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


def _write_verified(model: ir.Model, original: onnx.ModelProto, output: Path, *, verify: bool, rtol: float,
                    sparse_storage: bool) -> tuple[int, Comparison | None]:
    """Write to a temporary file, verify it if asked, and only then move it to ``output``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".onnx", dir=output.parent)
    os.close(fd)
    try:
        size = save_model(model, tmp, sparse_storage=sparse_storage)
        comparison = None
        if verify:
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
           sparse_storage: bool = False, rtol: float = EXACT_RTOL,
           input_shapes: Mapping[str, Sequence[int]] | None = None) -> ExportResult:
    """Canonicalize, shrink dead channels and write an optimized ONNX file that ONNX Runtime runs."""
    out = check_output_path(output, (source if isinstance(source, (str, os.PathLike)) else None,))
    model = _load(source, example_inputs, input_shapes)
    original = ir.to_proto(model)
    before = model_stats(model, _file_size(source))
    result = Pipeline(pipelines.export())(model)
    size, comparison = _write_verified(model, original, out, verify=verify, rtol=rtol,
                                       sparse_storage=sparse_storage)
    return ExportResult(out, before, model_stats(model, size), result.reports, comparison)


@dataclasses.dataclass
class PruneResult:
    output: Path
    before: ModelStats
    after: ModelStats
    reports: list[PassReport]
    output_deviation: Comparison

    @property
    def prune_report(self) -> PassReport:
        return next(r for r in self.reports if r.pass_name == "Prune")

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "before": self.before.to_dict(), "after": self.after.to_dict(),
                "layers": self.prune_report.details["layers"],
                "relative_weight_error": self.prune_report.details["relative_weight_error"],
                "output_deviation": self.output_deviation.to_dict(),
                "passes": [r.to_dict() for r in self.reports]}


def prune(source: Any, output: str | os.PathLike, config: PruneConfig, example_inputs: Any = None, *,
          input_shapes: Mapping[str, Sequence[int]] | None = None) -> PruneResult:
    """Prune (approximate) and write the model; reports weight error and output deviation on random inputs."""
    config.validate()
    out = check_output_path(output, (source if isinstance(source, (str, os.PathLike)) else None,))
    model = _load(source, example_inputs, input_shapes)
    original = ir.to_proto(model)
    before = model_stats(model, _file_size(source))
    result = Pipeline(pipelines.prune(config))(model)
    size = save_model(model, out)
    deviation = compare(original, model, rtol=float("inf"))
    return PruneResult(out, before, model_stats(model, size), result.reports, deviation)
