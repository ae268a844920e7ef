"""Pass protocol: onnx-ir passes that return a report, and explicit ordered pipelines.

A sparseforge pass subclasses ``onnx_ir.passes.InPlacePass`` and returns :class:`ReportedPassResult`, whose
:class:`PassReport` says what the pass found, what it changed and why it skipped each candidate. Passes do not
print; the CLI renders reports. A :class:`Pipeline` is an explicit ordered list of passes that collects every
report and records the applied passes in ``model.metadata_props``.

Prerequisites: a pass lists in ``prerequisites`` the names of passes or analysis facts that must run before it in
the same pipeline; a pass offers its own name plus the names in ``provides`` (e.g. StructureAnalysis provides every
registered fact). :class:`Pipeline` refuses, when built, an order that leaves a prerequisite unmet. (Not called
``requires``: ``onnx_ir.passes.PassBase.requires(model)`` is onnx-ir's precondition hook.)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

import onnx_ir as ir

from sparseforge.errors import SparseforgeError
from sparseforge.ir import keys

logger = logging.getLogger(__name__)

Severity = Literal["note", "warning", "error"]


@dataclasses.dataclass
class Diagnostic:
    """One finding of a pass about one node or value.

    ``code`` is a stable identifier (``"skip.shared-weight"``), ``node`` the ONNX node name it concerns.
    """

    severity: Severity
    code: str
    message: str
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PassReport:
    """What one pass found, what it changed and why it skipped candidates (JSON-serialisable)."""

    pass_name: str
    modified: bool = False
    counts: Counter = dataclasses.field(default_factory=Counter)
    diagnostics: list[Diagnostic] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def note(self, code: str, message: str, node: str | None = None) -> None:
        self.diagnostics.append(Diagnostic("note", code, message, node))

    def warn(self, code: str, message: str, node: str | None = None) -> None:
        self.diagnostics.append(Diagnostic("warning", code, message, node))

    def changed(self, code: str, message: str, node: str | None = None) -> None:
        """Record a change: counts it under ``code`` and keeps the message."""
        self.modified = True
        self.counts[code] += 1
        self.diagnostics.append(Diagnostic("note", code, message, node))

    def to_dict(self) -> dict[str, Any]:
        return {
            "pass": self.pass_name,
            "modified": self.modified,
            "counts": dict(self.counts),
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "details": self.details,
            "seconds": round(self.seconds, 4),
        }


@dataclasses.dataclass
class ReportedPassResult(ir.passes.PassResult):
    """``PassResult`` plus the pass's report (precedent: onnxscript's ``FoldConstantsResult``)."""

    report: PassReport = dataclasses.field(default_factory=lambda: PassReport("?"))


class ReportingPass(ir.passes.InPlacePass):
    """Base class: subclasses implement :meth:`run` filling a report; ``call`` wraps it."""

    #: Name used in reports and provenance; defaults to the class name.
    name: str = ""
    #: Names of passes or analysis facts that must have run earlier in the pipeline.
    prerequisites: tuple[str, ...] = ()
    #: Names this pass makes available to later passes, besides its own name (e.g. analysis facts).
    provides: tuple[str, ...] = ()

    @property
    def pass_name(self) -> str:
        return self.name or type(self).__name__

    def run(self, model: ir.Model, report: PassReport) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, model: ir.Model) -> ReportedPassResult:
        report = PassReport(self.pass_name)
        start = time.perf_counter()
        self.run(model, report)
        report.seconds = time.perf_counter() - start
        logger.info("%s: modified=%s %s", self.pass_name, report.modified, dict(report.counts))
        return ReportedPassResult(model, report.modified, report)

    def stamp(self, node: ir.Node, note: str | None = None) -> None:
        """Record provenance on a node created or rewritten by this pass (serialized into the ONNX file)."""
        node.metadata_props[keys.PROV_PASS] = self.pass_name
        if note:
            node.metadata_props[keys.PROV_NOTE] = note


class PipelineError(RuntimeError):
    """A pass raised an unexpected error; the message names it and the passes that ran before."""


class PipelineOrderError(PipelineError):
    """A pipeline was assembled with a pass before one it requires."""


def check_requirements(passes: Sequence[ir.passes.PassBase]) -> None:
    """Raise :class:`PipelineOrderError` naming the first prerequisite no earlier pass provides."""
    available: set[str] = set()
    names: list[str] = []
    for p in passes:
        name = getattr(p, "pass_name", type(p).__name__)
        missing = [r for r in getattr(p, "prerequisites", ()) if r not in available]
        if missing:
            before = ", ".join(names) or "none"
            raise PipelineOrderError(f"pass {name} requires {', '.join(missing)}, which no earlier pass provides "
                                     f"(passes before it: {before}); add the pass providing it before {name}")
        available.add(name)
        available.update(getattr(p, "provides", ()))
        names.append(name)


@dataclasses.dataclass
class PipelineResult:
    model: ir.Model
    reports: list[PassReport]

    @property
    def modified(self) -> bool:
        return any(r.modified for r in self.reports)

    def report(self, pass_name: str) -> PassReport | None:
        for r in reversed(self.reports):
            if r.pass_name == pass_name:
                return r
        return None

    def to_dict(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.reports]


Instrument = Callable[[str, ir.Model, PassReport], None]

#: Attribute of the log record ``Pipeline`` emits (logger ``sparseforge.passes.infra``, DEBUG) before each pass,
#: ``(index, total, pass_name, finished)``, and one after it; a progress display listens for them.
PROGRESS_KEY = "sparseforge_progress"


class Pipeline:
    """An explicit ordered list of passes, run once each, collecting reports.

    ``instruments`` are called after each pass with ``(pass_name, model, report)`` (e.g. to dump IR).
    User-caused :class:`~sparseforge.errors.SparseforgeError` propagate unchanged; anything else is wrapped
    in :class:`PipelineError` naming the failing pass and the passes already run. An order that runs a pass
    before one of its ``prerequisites`` raises :class:`PipelineOrderError` here, before anything runs.
    """

    def __init__(self, passes: Sequence[ir.passes.PassBase], instruments: Sequence[Instrument] = ()):
        check_requirements(passes)
        self.passes = list(passes)
        self.instruments = list(instruments)

    def __call__(self, model: ir.Model) -> PipelineResult:
        reports: list[PassReport] = []
        for index, p in enumerate(self.passes):
            name = getattr(p, "pass_name", type(p).__name__)
            # progress: a record before each pass (the CLI shows it on a terminal; passes never print)
            logger.debug("running pass %d/%d: %s", index + 1, len(self.passes), name,
                         extra={PROGRESS_KEY: (index + 1, len(self.passes), name, False)})
            start = time.perf_counter()
            try:
                result = p(model)
            except SparseforgeError:
                raise
            except Exception as exc:
                done = ", ".join(r.pass_name for r in reports) or "none"
                raise PipelineError(f"pass {name} failed (passes already run: {done}): {exc}") from exc
            model = result.model
            report = getattr(result, "report", None) or PassReport(name, modified=result.modified)
            if not report.seconds:
                report.seconds = time.perf_counter() - start
            reports.append(report)
            for instrument in self.instruments:
                instrument(name, model, report)
            logger.debug("finished pass %d/%d: %s", index + 1, len(self.passes), name,
                         extra={PROGRESS_KEY: (index + 1, len(self.passes), name, True)})
        applied = [r.pass_name for r in reports]
        previous = model.metadata_props.get(keys.PROV_PIPELINE)
        model.metadata_props[keys.PROV_PIPELINE] = ",".join(([previous] if previous else []) + applied)
        return PipelineResult(model, reports)
