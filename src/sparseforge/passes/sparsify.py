"""Sparse-op rewriting: per-layer decisions (dense / CSR / BSR / N:M) and the rewrite to ``ai.sparseforge`` ops.

:class:`DecideFormatPass` asks a :class:`CostModel` (fitted to kernel timings measured on the target, see
``codegen/calibration.py``) for the predicted time of every applicable kernel and keeps the fastest; it never
picks a sparse kernel the model predicts slower than dense, and records the choice and the reason on the node
(``node.meta["sparseforge.decision"]``, ``metadata_props["pkg.sparseforge.decision"]``) and in its report.

:class:`SparsifyPass` then replaces each layer decided sparse by the matching ``ai.sparseforge`` op
(:mod:`sparseforge.ir.ops`), absorbing the layer's bias, and registers the ops' ONNX functions so the model still
runs in ONNX Runtime. Rewrites are exact.

Candidates: ``MatMul(x, W)`` and ``Gemm(x, W, C)`` (``transA=0``) with a constant 2-D weight; ``Conv`` 2-D 1x1 with
stride 1, no padding, group 1 (NCHW).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import onnx_ir as ir

from sparseforge.ir import keys, ops
from sparseforge.ir.weights import WeightView, constant_array, view_of
from sparseforge.passes.canonicalize import new_initializer
from sparseforge.passes.infra import PassReport, ReportingPass
from sparseforge.passes.structure_analysis import nonzero_blocks

META_DECISION = "sparseforge.decision"
PROV_DECISION = "pkg.sparseforge.decision"

#: Block shapes (rows x cols of W) the BSR kernels are built for, tried in this order.
BSR_BLOCKS: tuple[tuple[int, int], ...] = ((4, 1), (8, 1), (16, 1), (1, 4), (1, 8), (4, 4), (16, 16))
NM_PATTERNS: tuple[tuple[int, int], ...] = ((1, 4), (2, 8), (2, 4), (4, 8))


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
            return f"bsr {self.block[0]}x{self.block[1]}"
        if self.fmt == "nm" and self.nm:
            return f"nm {self.nm[0]}:{self.nm[1]}"
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
    kind: str  # "matmul" or "conv1x1"
    m: int  # rows of the dense operand (tokens x batch, or batch x H x W)


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
        attrs = node.attributes
        if view.kernel_shape != (1, 1):
            return f"Conv kernel {view.kernel_shape} (sparse conv is 1x1)"
        if view.groups != 1:
            return "grouped Conv"
        if any(int(v) != 1 for v in (attrs["strides"].value if "strides" in attrs else [])):
            return "strided Conv"
        if any(int(v) != 1 for v in (attrs["dilations"].value if "dilations" in attrs else [])):
            return "dilated Conv"
        if any(int(v) != 0 for v in (attrs["pads"].value if "pads" in attrs else [])):
            return "padded Conv"
        auto_pad = attrs["auto_pad"].value if "auto_pad" in attrs else "NOTSET"
        if auto_pad not in ("NOTSET", "VALID", b"NOTSET", b"VALID"):
            return f"Conv auto_pad={auto_pad}"
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


def _candidate(node: ir.Node) -> Candidate:
    view = view_of(node)
    dims = [int(d) for d in node.inputs[0].shape]
    if node.op_type == "Conv":
        m = dims[0] * int(np.prod(dims[2:]))
        return Candidate(view, "conv1x1", m)
    return Candidate(view, "matmul", int(np.prod(dims[:-1])) if len(dims) > 1 else 1)


#: A format storing at least this fraction of the weight is a dense kernel with index overhead: not a candidate.
MAX_STORED_FRACTION = 0.9


def _options(matrix: np.ndarray) -> list[tuple[str, dict]]:
    """The sparse formats worth considering for ``matrix``.

    Every N:M listed is fully complied with; CSR and BSR formats that would store nearly the whole weight
    (``MAX_STORED_FRACTION``) are left out.
    """
    return [(fmt, params) for fmt, params in _all_options(matrix) if params["stored"] < MAX_STORED_FRACTION]


def _all_options(matrix: np.ndarray) -> list[tuple[str, dict]]:
    density = float(np.count_nonzero(matrix)) / matrix.size if matrix.size else 1.0
    options: list[tuple[str, dict]] = [("csr", {"stored": density})]
    for block in BSR_BLOCKS:
        blocks = nonzero_blocks(matrix, *block)
        nnzb = int(np.count_nonzero(blocks))
        options.append(("bsr", {"block": block, "nnz_blocks": nnzb, "stored": nnzb / blocks.size}))
    for n, m in NM_PATTERNS:
        rows, cols = matrix.shape
        groups = -(-cols // m)
        nz = np.zeros((rows, groups * m), bool)
        nz[:, :cols] = matrix != 0
        if nz.reshape(rows, groups, m).sum(axis=2).max(initial=0) <= n:
            options.append(("nm", {"nm": (n, m), "stored": n / m}))
    return options


class DecideFormatPass(ReportingPass):
    """Choose dense / CSR / BSR / N:M per layer from the cost model; record choice and reason."""

    name = "DecideFormat"

    def __init__(self, cost_model: CostModel | None, *, dense_only: bool = False, min_speedup: float = 1.1):
        super().__init__()
        self.cost_model = cost_model
        self.dense_only = dense_only
        self.min_speedup = min_speedup

    def run(self, model: ir.Model, report: PassReport) -> None:
        ir.passes.common.ShapeInferencePass()(model)  # M (rows of the dense operand) comes from static shapes
        decisions = []
        for node in model.graph:
            reason = why_not(node)
            if reason == "no constant weight":
                continue
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
        density = float(np.count_nonzero(matrix)) / matrix.size if matrix.size else 1.0
        if reason is not None:
            return Decision(name, "dense", f"dense: {reason}", shape=(n, k), density=density)
        cand = _candidate(node)
        base = dict(m=cand.m, shape=(n, k), density=density)
        if self.dense_only:
            return Decision(name, "dense", "dense: sparse kernels disabled (--dense)", **base)
        if self.cost_model is None:
            return Decision(name, "dense", "dense: no cost model for this target", **base)
        dense_s = self.cost_model.predict("dense", cand.m, n, k, kind=cand.kind)
        if dense_s is None:
            return Decision(name, "dense", "dense: no timing data for the dense kernel at this shape", **base)
        best: tuple[float, str, dict] | None = None
        for fmt, params in _options(matrix):
            t = self.cost_model.predict(fmt, cand.m, n, k, density=density, block=params.get("block"),
                                        nm=params.get("nm"), nnz_blocks=params.get("nnz_blocks"), kind=cand.kind)
            if t is not None and (best is None or t < best[0]):
                best = (t, fmt, params)
        if best is None:
            return Decision(name, "dense", f"dense: no sparse kernel timing for density {density:.2f}",
                            dense_s=dense_s, **base)
        t, fmt, params = best
        label = Decision(name, fmt, "", block=params.get("block"), nm=params.get("nm")).label
        relative = getattr(self.cost_model, "unit", "s") == "relative"
        if t * self.min_speedup > dense_s:
            if relative:
                why = (f"dense: density {density:.2f}; the best sparse option ({label}) stores "
                       f"{params['stored']:.2f} of the weight, above the {self.cost_model.target} crossover "
                       f"{self.cost_model.crossover(fmt, cand.kind, cand.m):.2f} (rule, no device measured)")
            else:
                why = (f"dense: density {density:.2f}; best sparse kernel ({label}) predicted {t * 1e3:.3f} ms vs "
                       f"dense {dense_s * 1e3:.3f} ms on the measured table")
            return Decision(name, "dense", why, dense_s=dense_s, predicted_s=t, **base)
        if relative:
            why = (f"density {density:.2f}: {label} stores {params['stored']:.2f} of the weight, below the "
                   f"{self.cost_model.target} crossover {self.cost_model.crossover(fmt, cand.kind, cand.m):.2f}: "
                   f"predicted {dense_s / t:.1f}x (rule, no device measured)")
        else:
            why = (f"density {density:.2f}: predicted {t * 1e3:.3f} ms vs dense {dense_s * 1e3:.3f} ms "
                   f"({dense_s / t:.1f}x)")
        return Decision(name, fmt, why, block=params.get("block"), nm=params.get("nm"), predicted_s=t,
                        dense_s=dense_s, **base)


class SparsifyPass(ReportingPass):
    """Replace layers decided sparse (``node.meta[META_DECISION]``) by ``ai.sparseforge`` ops."""

    name = "Sparsify"

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            decision: Decision | None = node.meta.get(META_DECISION)
            if decision is None or decision.fmt == "dense":
                continue
            cand = candidate(node)
            if cand is None:
                report.warn("skip.not-candidate", f"decided {decision.label} but {why_not(node)}", node.name)
                continue
            self._rewrite(model, node, cand, decision, report)
        ops.ensure_functions(model)
        ir.passes.common.RemoveUnusedNodesPass()(model)

    def _rewrite(self, model: ir.Model, node: ir.Node, cand: Candidate, decision: Decision,
                 report: PassReport) -> None:
        view = cand.view
        matrix = view.matrix()
        encoded = ops.encode(np.ascontiguousarray(matrix), decision.fmt, block=decision.block or (4, 1),
                             nm=decision.nm or (2, 4))
        n_out = matrix.shape[0]
        bias = view.bias_array()
        extra_add = None
        if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None and bias is None:
            extra_add = node.inputs[2]  # a C that is not per output channel stays a separate Add
        absorbed_add = None
        if bias is None and extra_add is None:
            absorbed_add, bias = _following_bias_add(node, n_out)
        if bias is None:
            bias = np.zeros(n_out, matrix.dtype)
        base = node.name or view.weight.name or "sparse"
        inputs = [node.inputs[0],
                  new_initializer(model, f"{base}.values", encoded.values),
                  new_initializer(model, f"{base}.indices", encoded.indices),
                  new_initializer(model, f"{base}.dims", encoded.dims),
                  new_initializer(model, f"{base}.bias", bias.astype(matrix.dtype))]
        attrs = [ir.AttrString("format", decision.fmt)]
        if encoded.block:
            attrs.append(ir.AttrInt64s("block", list(encoded.block)))
        if encoded.nm:
            attrs.append(ir.AttrInt64s("nm", list(encoded.nm)))
        new = ir.Node(keys.DOMAIN, ops.op_type(decision.fmt, cand.kind), inputs, attrs, name=node.name,
                      metadata_props=dict(node.metadata_props))
        new.meta[META_DECISION] = decision
        out = new.outputs[0]
        old_out = node.outputs[0]
        out.name, out.shape, out.type = old_out.name, old_out.shape, old_out.type
        model.graph.insert_before(node, new)
        result = out
        if extra_add is not None:
            add = ir.Node("", "Add", [out, extra_add], name=f"{base}_c")
            add.outputs[0].shape, add.outputs[0].type = old_out.shape, old_out.type
            model.graph.insert_after(new, add)
            out.name = f"{old_out.name}_nobias"
            result = add.outputs[0]
            result.name = old_out.name
        if absorbed_add is not None:  # the bias Add after a MatMul now lives in the sparse op
            add_out = absorbed_add.outputs[0]
            out.name, out.shape, out.type = add_out.name, add_out.shape, add_out.type
            add_out.replace_all_uses_with(out, replace_graph_outputs=True)
            model.graph.remove(absorbed_add, safe=True)
        else:
            old_out.replace_all_uses_with(result, replace_graph_outputs=True)
        model.graph.remove(node, safe=True)
        self.stamp(new, f"{decision.label}: {decision.reason}")
        report.changed(f"rewrite.{decision.fmt}", f"{node.op_type} -> {new.op_type} ({decision.label}, "
                       f"{encoded.values.size} stored values for {matrix.size} weights)", new.name)


def _following_bias_add(node: ir.Node, n_out: int) -> tuple[ir.Node | None, np.ndarray | None]:
    """A single-consumer ``Add(y, b)`` with a constant per-output-channel ``b`` right after ``node``."""
    out = node.outputs[0]
    uses = list(out.uses())
    if len(uses) != 1 or out.is_graph_output():
        return None, None
    user, index = uses[0]
    if user.op_type != "Add" or user.domain not in ("", "ai.onnx"):
        return None, None
    other = constant_array(user.inputs[1 - index])
    if other is None or other.size != n_out or other.shape[-1] != n_out:
        return None, None
    y_rank = len(out.shape) if out.shape is not None else 0
    if other.ndim > y_rank:
        return None, None
    return user, other.reshape(-1).astype(np.float32)


def dense_weight(node: ir.Node) -> np.ndarray:
    """The dense ``[N, K]`` weight of an ``ai.sparseforge`` node (decompressed)."""
    fmt, _ = ops.op_format(node.op_type)
    values, indices, dims = (constant_array(node.inputs[i]) for i in (1, 2, 3))
    return ops.decode(values, indices, dims, fmt)
