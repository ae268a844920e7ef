"""``sparseforge calibrate``: measure the kernel timings the dense/sparse decisions of a model need, and cache them.

``compile`` predicts with the performance model (fitting a kernel variant's grid the first time it is needed) and
measures only close calls at the layer's shape; this measures every layer's best option against dense at its
shape, so the decisions that follow are all measured ones. With ``fresh`` it first forgets the cached timings of
the model's layer shapes and the performance model's fits (measured again as needed). Only targets whose code
runs here can be measured.
"""

from __future__ import annotations

from typing import Any

from sparseforge.codegen.cost.measured import CalibrationTable, cost_model_for
from sparseforge.errors import TargetError
from sparseforge.ir.frontend import load, require_static_shapes
from sparseforge.passes import pipelines
from sparseforge.passes.decide import candidate
from sparseforge.passes.infra import Pipeline

from .compile import resolve_target


def calibrate_model(source: Any, *, target: str = "x86", threads: int | None = None, fresh: bool = False,
                    input_shapes=None, allow_invalid_input: bool = False
                    ) -> tuple[CalibrationTable, list[dict[str, Any]]]:
    """Measure every timing the decisions for ``source`` need; returns (table, decisions)."""
    resolved = resolve_target(target, threads)
    if not resolved.family.runs_on_host:
        raise TargetError(f"cannot calibrate target '{target}' on this machine (its code does not run here)",
                          hint="decisions for it use published crossover densities; measure on a device with "
                               "`sparseforge bench --rpc`")
    model = load(source, input_shapes=input_shapes, allow_invalid=allow_invalid_input)
    require_static_shapes(model)
    cost_model = cost_model_for(resolved.description, resolved.kernel_target)
    Pipeline(pipelines.before_decisions())(model)
    if fresh:
        for node in model.graph:
            cand = candidate(node)
            if cand is None:
                continue
            n, k = cand.view.shape
            suffix = f"|{cand.cost_kind}|{cand.m}|{n}|{k}"
            for key in [key for key in cost_model.table.entries if key.endswith(suffix)]:
                del cost_model.table.entries[key]
        cost_model.perf.fits.clear()
    result = Pipeline(pipelines.decisions(cost_model, refine_all=True))(model)
    return cost_model.table, result.report("DecideFormat").details["decisions"]
