"""The pass timeline: a :class:`~sparseforge.passes.infra.Pipeline` instrument that records, after each pass, the
model's node count, parameters and FLOPs and which nodes the pass added and removed (the report's pass table)."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

from sparseforge.ir.stats import model_stats


def _names(model: ir.Model) -> set[str]:
    return {node.name or f"<{node.op_type}#{i}>" for i, node in enumerate(model.graph)}


class PassTimeline:
    """Call :meth:`start` with the model before the pipeline, pass the object as an instrument; ``entries`` holds
    ``{pass, seconds, modified, nodes, parameters, flops, nonzero_flops, added, removed}`` per pass (``added`` /
    ``removed``: node names, at most :data:`MAX_LISTED` each, with counts)."""

    MAX_LISTED = 50

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.initial: dict[str, Any] | None = None
        self._names: set[str] = set()

    def _stats(self, model: ir.Model) -> dict[str, Any]:
        stats = model_stats(model, size_bytes=0)
        return {"nodes": stats.nodes, "parameters": stats.parameters, "flops": stats.flops,
                "nonzero_flops": stats.nonzero_flops}

    def start(self, model: ir.Model) -> None:
        self.initial = self._stats(model)
        self._names = _names(model)

    def __call__(self, pass_name: str, model: ir.Model, report) -> None:
        names = _names(model)
        added, removed = sorted(names - self._names), sorted(self._names - names)
        self._names = names
        self.entries.append({"pass": pass_name, "seconds": round(float(getattr(report, "seconds", 0.0)), 4),
                             "modified": bool(getattr(report, "modified", False)), **self._stats(model),
                             "added": added[: self.MAX_LISTED], "added_count": len(added),
                             "removed": removed[: self.MAX_LISTED], "removed_count": len(removed)})
