"""Per-layer dense-vs-sparse decisions from a cost model, over every option of every structure form.

:class:`DecideFormatPass` asks a :class:`CostModel` (fitted to kernel timings measured on the target, or rules)
for the predicted time of dense and of every option the registry :mod:`sparseforge.ir.forms` offers the layer
(in :data:`~sparseforge.ir.forms.FORMS` order; formats storing ``MAX_STORED_FRACTION`` or more left out) and keeps
the fastest; it never picks a sparse kernel the model predicts slower than dense (``min_speedup``), and records
the choice and the reason on the node (``node.meta["sparseforge.decision"]``,
``metadata_props["pkg.sparseforge.decision"]``) and in its report.

Candidates: ``MatMul(x, W)`` and ``Gemm(x, W, C)`` (``transA=0``) with a constant 2-D weight; 2-D ``Conv`` (NCHW,
static input): 1x1 with stride 1, no padding and one group as kind "conv1x1", any other geometry as kind "conv"
(the direct sparse conv kernel; BSR only with ``r x 1`` blocks, whose rows share a tap).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import onnx_ir as ir

from sparseforge.ir import forms, ops
from sparseforge.ir.forms import MAX_STORED_FRACTION  # noqa: F401 - re-exported
from sparseforge.ir.forms.bsr import BLOCK_SHAPES as BSR_BLOCKS  # noqa: F401 - re-exported
from sparseforge.ir.forms.nm import PATTERNS as NM_PATTERNS  # noqa: F401 - re-exported
from sparseforge.ir.weights import QuantizedWeightView, WeightView, quantized_view_of, view_of
from sparseforge.ir.conv import ConvSpec, spec_of
from sparseforge.passes.analysis.analyse import facts_for, facts_of
from sparseforge.passes.canonicalize import infer_shapes
from sparseforge.passes.infra import PassReport, ReportingPass

#: The analysis facts the decisions read (``StructureAnalysis`` provides them; see :meth:`DecideFormatPass.facts`).
FACTS_READ = ("density", "nm", "blocks")

#: Options storing more than this multiple of the sparsest option's elements are not considered.
CONSIDERED_STORED_RATIO = 3.0
#: A predicted speedup within this factor of ``min_speedup`` (either side) is a close call: measured at the
#: layer's shape when the cost model can (``refine``).
REFINE_BAND = 2.0
#: The band for k x k convolutions: the performance model predicts them through the 1x1 conv fits (a proxy that
#: was off by up to 1.9x on ResNet-18 layers), so a wider range of predictions is measured.
CONV_REFINE_BAND = 3.0
#: A layer predicted to take less than this dense (seconds, measured cost models only) is offered CSR alone:
#: whatever sparse form wins saves it a few microseconds, and asking about other variants would make a measured
#: cost model fit their kernels (5-15 s each, once per machine) for layers that do not matter, such as the
#: squeeze-and-excitation layers of MobileNetV3/EfficientNet.
SMALL_LAYER_SECONDS = 20e-6
#: Such a layer is not decided by timings at all: at a few microseconds, dense and CSR differ by less than the
#: noise of measuring them, and fits from two empty caches chose differently (MobileNetV3-Small 23 against 33
#: sparse layers, EfficientNet-B0 56 against 32, all squeeze-and-excitation layers of 2-5 us). It takes CSR when
#: at most this fraction of its weight is nonzero (the x86 crossover of :mod:`sparseforge.codegen.cost.rules`),
#: else dense, so its decision is the same from run to run and machine to machine.
SMALL_LAYER_CSR_DENSITY = 0.25

META_DECISION = "sparseforge.decision"
PROV_DECISION = "pkg.sparseforge.decision"

@dataclasses.dataclass(frozen=True)
class Decision:
    """The kernel chosen for one layer and why."""

    node: str
    fmt: str  # "dense", "csr", "bsr", "nm"
    reason: str
    block: tuple[int, int] | None = None
    nm: tuple[int, int] | None = None
    predicted_s: float | None = None
    dense_s: float | None = None
    m: int = 0
    shape: tuple[int, int] = (0, 0)
    density: float = 1.0

    @property
    def label(self) -> str:
        if self.fmt == "bsr" and self.block:
            return forms.bsr.label(self.block)
        if self.fmt == "nm" and self.nm:
            return forms.nm.label(self.nm)
        return self.fmt

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["kernel"] = self.label
        return d


class CostModel(Protocol):
    """Predicted seconds of one kernel on the target (None: no data / not applicable)."""

    def predict(self, kernel: str, m: int, n: int, k: int, *, density: float = 1.0,
                block: tuple[int, int] | None = None, nm: tuple[int, int] | None = None,
                nnz_blocks: int | None = None, kind: str = "matmul") -> float | None: ...


@dataclasses.dataclass(frozen=True)
class Candidate:
    view: WeightView
    kind: str  # "matmul", "conv1x1" or "conv" (any other 2-D convolution, geometry in ``conv``)
    m: int  # rows of the dense operand (tokens x batch, or batch x output positions)
    conv: ConvSpec | None = None

    @property
    def cost_kind(self) -> str:
        """The kind the cost model is asked about: a conv's geometry key, else :attr:`kind`."""
        return self.conv.key() if self.conv is not None else self.kind


def candidate(node: ir.Node) -> Candidate | None:
    """The layer as a sparse-kernel candidate, or None (with the reason available from :func:`why_not`)."""
    return None if why_not(node) else _candidate(node)


def why_not(node: ir.Node) -> str | None:
    """Why ``node`` cannot use a sparse kernel (None if it can)."""
    view = view_of(node)
    if view is None:
        return "no constant weight"
    if view.data_index != 0:
        return "constant left operand (W @ x) is not supported"
    if not np.issubdtype(view.stored().dtype, np.floating) or view.stored().dtype != np.float32:
        return f"weight dtype {view.stored().dtype} (sparse kernels are float32)"
    x = node.inputs[0]
    if node.op_type == "Conv":
        if x.shape is None or not x.shape.is_static():
            return "input shape is not static"
        try:
            conv_spec(node)
        except ValueError as exc:
            return str(exc)
        if len(node.inputs) > 2 and node.inputs[2] is not None and view.bias is None:
            return "Conv bias is not a constant per channel"
    if node.op_type == "Gemm":
        if "transA" in node.attributes and int(node.attributes["transA"].value):
            return "Gemm with transA"
        for key in ("alpha", "beta"):
            if key in node.attributes and float(node.attributes[key].value) != 1.0:
                return f"Gemm {key} != 1"
    if x.shape is None or not x.shape.is_static():
        return "input shape is not static"
    if len(x.shape) < 1:
        return "scalar input"
    return None


def conv_spec(node: ir.Node) -> ConvSpec:
    """The geometry of a ``Conv`` node with a static input (ValueError if it is not a 2-D convolution)."""
    return spec_of(node, tuple(int(d) for d in node.inputs[0].shape), tuple(view_of(node).stored().shape))


def _candidate(node: ir.Node) -> Candidate:
    view = view_of(node)
    dims = [int(d) for d in node.inputs[0].shape]
    if node.op_type == "Conv":
        spec = conv_spec(node)
        if spec.is_pointwise:
            return Candidate(view, "conv1x1", spec.m)
        return Candidate(view, "conv", spec.m, spec)
    return Candidate(view, "matmul", int(np.prod(dims[:-1])) if len(dims) > 1 else 1)


def _quantized_decision(view: QuantizedWeightView) -> Decision:
    """Quantized layers stay as written (dense): the decision records them so none is silently left out."""
    matrix = view.matrix()
    return Decision(view.name, "dense", f"dense: quantized layer ({view.stored().dtype} weights), compiled as "
                    "written; sparse kernels are float32", shape=view.shape,
                    density=float(np.count_nonzero(matrix)) / max(1, matrix.size))


def best_option(cost_model: CostModel, cand: Candidate, matrix: np.ndarray, facts: dict,
                dense_s: float | None = None) -> tuple[float, forms.Option] | None:
    """``(predicted seconds, option)`` of the sparse option with the least predicted time for ``matrix`` (its
    analysis ``facts``: :data:`FACTS_READ`), or None when the cost model predicts none of them. Options storing
    :data:`CONSIDERED_STORED_RATIO` times more than the sparsest predicted one are not asked about (a measured
    cost model would fit their kernels for nothing); with ``dense_s`` (the layer's predicted dense time) below
    :data:`SMALL_LAYER_SECONDS` only CSR is; ties go to the earlier form of the registry."""
    n, k = matrix.shape
    density = float(facts["density"]) if matrix.size else 1.0
    options = forms.options(matrix, facts)
    if cand.kind == "conv":  # the direct conv kernel reads one tap per block: only r x 1 blocks
        options = [o for o in options if o.block is None or o.block[1] == 1]
    if is_small_layer(cost_model, dense_s):
        options = [o for o in options if o.form == "csr"] or options
    predicted: dict[int, float | None] = {}

    def predict(i: int) -> float | None:
        if i not in predicted:
            option = options[i]
            predicted[i] = cost_model.predict(option.form, cand.m, n, k, density=density,
                                              **option.predict_kwargs(), kind=cand.cost_kind)
        return predicted[i]

    by_stored = sorted(range(len(options)), key=lambda i: options[i].stored)
    anchor = next((options[i].stored for i in by_stored if predict(i) is not None), None)
    best: tuple[float, forms.Option] | None = None
    for i, option in enumerate(options):
        if anchor is not None and option.stored > CONSIDERED_STORED_RATIO * anchor:
            continue
        t = predict(i)
        if t is not None and (best is None or t < best[0]):
            best = (t, option)
    return best


def is_small_layer(cost_model: CostModel, dense_s: float | None) -> bool:
    """Whether a measured cost model predicts the layer under :data:`SMALL_LAYER_SECONDS` dense."""
    return getattr(cost_model, "unit", "s") != "relative" and dense_s is not None and dense_s < SMALL_LAYER_SECONDS


def small_layer_rule(dense_s: float) -> str:
    """The reason text of the small-layer rule (shared by the decision and ``explain``)."""
    return (f"the layer takes {dense_s * 1e6:.1f} us dense (under {SMALL_LAYER_SECONDS * 1e6:.0f} us): decided by "
            f"density, CSR at most {SMALL_LAYER_CSR_DENSITY}, not by timings, so the same from run to run")


def small_layer_decision(name: str, density: float, dense_s: float, t: float, base: dict) -> Decision:
    """The decision of a small layer (:func:`is_small_layer`) whose best option is CSR: by its density alone
    (:data:`SMALL_LAYER_CSR_DENSITY`), never by timings."""
    rule = small_layer_rule(dense_s)
    if density <= SMALL_LAYER_CSR_DENSITY:
        return Decision(name, "csr", f"density {density:.2f}: {rule}", predicted_s=t, dense_s=dense_s, **base)
    return Decision(name, "dense", f"dense: density {density:.2f}; {rule}", predicted_s=t, dense_s=dense_s, **base)


class DecideFormatPass(ReportingPass):
    """Choose dense / CSR / BSR / N:M per layer from the cost model; record choice and reason.

    Reads the analysis facts (:data:`FACTS_READ`) that ``StructureAnalysis`` stored on each node; in a pipeline
    it must come after that pass (``prerequisites``). Called on its own, it asks the facts registry for them."""

    name = "DecideFormat"
    prerequisites = FACTS_READ

    def __init__(self, cost_model: CostModel | None, *, dense_only: bool = False, min_speedup: float = 1.1,
                 refine_all: bool = False):
        """``refine_all``: measure every layer's best option against dense at its shape (``calibrate``), not
        only the close calls (``compile``), when the cost model can measure."""
        super().__init__()
        self.cost_model = cost_model
        self.dense_only = dense_only
        self.min_speedup = min_speedup
        self.refine_all = refine_all

    @staticmethod
    def facts(node: ir.Node, view: WeightView, matrix: np.ndarray) -> dict:
        """The facts the decision reads: those stored by ``StructureAnalysis``, else computed by the registry."""
        stored = facts_of(node)
        if all(name in stored for name in FACTS_READ):
            return stored
        return facts_for(view, FACTS_READ, matrix)

    def run(self, model: ir.Model, report: PassReport) -> None:
        infer_shapes(model)  # M (rows of the dense operand) comes from static shapes
        decisions = []
        opset = ops.model_opset(model)
        model_reason = (f"model opset {opset} < {ops.MIN_FUNCTION_OPSET} (the sparse op's ONNX function needs "
                        f"opset {ops.MIN_FUNCTION_OPSET} or later)" if opset < ops.MIN_FUNCTION_OPSET else None)
        for node in model.graph:
            reason = why_not(node)
            if reason is None and model_reason is not None:
                reason = model_reason
            if reason == "no constant weight":
                quantized = quantized_view_of(node)
                if quantized is None:
                    continue
                decision = _quantized_decision(quantized)
            else:
                decision = self._decide(node, reason)
            node.meta[META_DECISION] = decision
            node.metadata_props[PROV_DECISION] = f"{decision.label}: {decision.reason}"
            decisions.append(decision.to_dict())
            report.counts[decision.label] += 1
            report.note(f"decision.{decision.fmt}", f"{decision.label}: {decision.reason}", decision.node)
        report.details["decisions"] = decisions

    def _decide(self, node: ir.Node, reason: str | None) -> Decision:
        name = node.name or "?"
        view = view_of(node)
        matrix = view.matrix()
        n, k = matrix.shape
        facts = self.facts(node, view, matrix)
        density = float(facts["density"]) if matrix.size else 1.0
        if reason is not None:
            return Decision(name, "dense", f"dense: {reason}", shape=(n, k), density=density)
        cand = _candidate(node)
        base = dict(m=cand.m, shape=(n, k), density=density)
        if self.dense_only:
            return Decision(name, "dense", "dense: sparse kernels disabled (--dense)", **base)
        if self.cost_model is None:
            return Decision(name, "dense", "dense: no cost model for this target", **base)
        dense_s = self.cost_model.predict("dense", cand.m, n, k, kind=cand.cost_kind)
        if dense_s is None:
            return Decision(name, "dense", "dense: no timing data for the dense kernel at this shape", **base)
        best = best_option(self.cost_model, cand, matrix, facts, dense_s)
        if best is None:
            return Decision(name, "dense", f"dense: no sparse kernel timing for density {density:.2f}",
                            dense_s=dense_s, **base)
        t, option = best
        fmt, label, stored = option.form, option.label, option.stored
        if is_small_layer(self.cost_model, dense_s) and fmt == "csr":
            return small_layer_decision(name, density, dense_s, t, base)
        relative = getattr(self.cost_model, "unit", "s") == "relative"
        source = getattr(self.cost_model, "prediction_source", "predicted")
        refine = getattr(self.cost_model, "refine", None)
        band = CONV_REFINE_BAND if cand.kind == "conv" else REFINE_BAND
        close = 1.0 / band <= dense_s / (t * self.min_speedup) <= band
        if refine is not None and (close or self.refine_all):
            measured = refine(fmt, cand.m, n, k, density=density, **option.predict_kwargs(), kind=cand.cost_kind)
            if measured is not None:  # a close call: measured at this shape, interleaved with dense
                (dense_s, t), source = measured, "measured at this shape"
        elif getattr(self.cost_model, "measured_at", None) and self.cost_model.measured_at(
                fmt, cand.m, n, k, density=density, **option.predict_kwargs(), kind=cand.cost_kind):
            source = "measured at this shape"
        if t * self.min_speedup > dense_s:
            if relative:
                why = (f"dense: density {density:.2f}; the best sparse option ({label}) stores "
                       f"{stored:.2f} of the weight, above the {self.cost_model.target} crossover "
                       f"{self.cost_model.crossover(fmt, cand.cost_kind, cand.m):.2f} (rule, no device measured)")
            else:
                why = (f"dense: density {density:.2f}; best sparse kernel ({label}) {t * 1e3:.3f} ms vs "
                       f"dense {dense_s * 1e3:.3f} ms ({source})")
            return Decision(name, "dense", why, dense_s=dense_s, predicted_s=t, **base)
        if relative:
            why = (f"density {density:.2f}: {label} stores {stored:.2f} of the weight, below the "
                   f"{self.cost_model.target} crossover {self.cost_model.crossover(fmt, cand.cost_kind, cand.m):.2f}: "
                   f"predicted {dense_s / t:.1f}x (rule, no device measured)")
        else:
            why = (f"density {density:.2f}: {t * 1e3:.3f} ms vs dense {dense_s * 1e3:.3f} ms "
                   f"({dense_s / t:.1f}x, {source})")
        return Decision(name, fmt, why, block=option.block, nm=option.nm, predicted_s=t,
                        dense_s=dense_s, **base)
