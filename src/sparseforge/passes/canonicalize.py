"""Canonicalization: the model every later pass can rely on.

* :class:`OptimizePass`: constant folding, dead-code removal, Constant nodes lifted to initializers and shape
  inference (onnxscript's optimizer; weight transposes are folded too, whatever their size);
* :class:`FoldBatchNormPass`: inference BatchNormalization folded into the preceding Conv/Gemm (onnxscript's
  rewrite rules, exact up to fp32 rounding);
* :class:`NormalizeGemmPass`: Gemm ``alpha``/``beta`` folded into constant ``B``/``C`` so that the
  ``(output, reduction)`` weight view is the weight actually applied;
* :class:`CheckWeightsPass`: every Conv weight is a constant (clear error otherwise).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir
import onnxscript.optimizer
from onnxscript import rewriter
from onnxscript.rewriter.rules.common import fuse_batchnorm_into_conv_rule, fuse_batchnorm_into_gemm_rule

from sparseforge.errors import UnsupportedModelError
from sparseforge.ir.weights import constant_array, view_of
from sparseforge.passes.infra import PassReport, ReportingPass

#: Fold constants up to this many elements (weights of any realistic layer).
FOLD_SIZE_LIMIT = 1 << 28


class OptimizePass(ReportingPass):
    """Constant folding, onnxscript's default cleanup rewrites and shape inference, keeping layer names."""

    name = "Optimize"

    def __init__(self, iterations: int = 3):
        super().__init__()
        self.iterations = iterations

    def run(self, model: ir.Model, report: PassReport) -> None:
        before = _op_histogram(model)
        for _ in range(self.iterations):
            folded = onnxscript.optimizer.fold_constants(
                model, input_size_limit=FOLD_SIZE_LIMIT, output_size_limit=FOLD_SIZE_LIMIT).modified
            rewritten = keep_layer_names(model, lambda m: rewriter.rewrite(m))
            ir.passes.common.RemoveUnusedNodesPass()(model)
            if not folded and not rewritten:
                break
        ir.passes.common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        ir.passes.common.RemoveUnusedNodesPass()(model)
        ir.passes.common.ShapeInferencePass()(model)
        name_generic_weights(model)
        after = _op_histogram(model)
        report.details["nodes_before"] = sum(before.values())
        report.details["nodes_after"] = sum(after.values())
        if before != after:
            report.changed("folded", f"{sum(before.values()) - sum(after.values())} node(s) folded or removed; "
                           f"{sum(before.values())} -> {sum(after.values())} nodes")


WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
_LAYER_TAG = "pkg.sparseforge.layer"


def keep_layer_names(model: ir.Model, rewrite) -> bool:
    """Run ``rewrite(model)``; weight nodes that it replaces by new nodes get their old names back.

    onnxscript's rewriter copies the matched nodes' ``metadata_props`` into the replacement nodes, so a
    temporary tag carries each weight node's name through any chain of rewrites. Returns whether the
    graph's node names changed.
    """
    for node in model.graph:
        if node.op_type in WEIGHT_OPS and node.name:
            node.metadata_props[_LAYER_TAG] = node.name
    names_before = [n.name for n in model.graph]
    rewrite(model)
    names = {n.name for n in model.graph}
    for node in model.graph:
        original = node.metadata_props.pop(_LAYER_TAG, None)
        if original and node.name != original and original not in names:
            names.discard(node.name)
            node.name = original
            names.add(original)
    return names_before != [n.name for n in model.graph]


_GENERIC_VALUE_NAME = re.compile(r"^(val|const|onnx::|_)?[_a-z]*_?\d+$")


def name_generic_weights(model: ir.Model) -> None:
    """Give generically named weights (``val_86``) the name of their layer (``encoder.layers.0.linear1.weight``)."""
    taken = set(model.graph.initializers)
    for node in model.graph:
        try:
            view = view_of(node)
        except UnsupportedModelError:
            continue
        if view is None or not node.name or not view.weight.is_initializer():
            continue
        name = view.weight.name or ""
        if _GENERIC_VALUE_NAME.match(name) and len(view.weight.uses()) == 1:
            candidate = f"{node.name}.weight"
            if candidate not in taken:
                taken.discard(name)
                view.weight.name = candidate
                taken.add(candidate)


def _op_histogram(model: ir.Model) -> dict[str, int]:
    hist: dict[str, int] = {}
    for node in model.graph:
        hist[node.op_type] = hist.get(node.op_type, 0) + 1
    return hist


class FoldBatchNormPass(ReportingPass):
    """Fold inference BatchNormalization into the Conv/Gemm that feeds it (and only it)."""

    name = "FoldBatchNorm"

    def run(self, model: ir.Model, report: PassReport) -> None:
        sources = {}
        for node in model.graph:
            if node.op_type == "BatchNormalization" and node.inputs[0] is not None:
                src = node.inputs[0].producer()
                sources[node.name] = src.name if src is not None else "?"
        rules = rewriter.RewriteRuleSet([fuse_batchnorm_into_conv_rule, fuse_batchnorm_into_gemm_rule])
        keep_layer_names(model, rules.apply_to_model)
        remaining = {n.name for n in model.graph if n.op_type == "BatchNormalization"}
        for bn, src in sources.items():
            if bn not in remaining:
                report.changed("folded-batchnorm", f"BatchNormalization '{bn}' folded into '{src}'", src)
        for node in model.graph:
            if node.op_type == "BatchNormalization":
                report.note("kept-batchnorm", "not foldable: its input is not the sole output of a Conv/Gemm "
                            "with constant parameters", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)


class NormalizeGemmPass(ReportingPass):
    """Fold Gemm ``alpha`` into a constant ``B`` and ``beta`` into a constant ``C``."""

    name = "NormalizeGemm"

    def run(self, model: ir.Model, report: PassReport) -> None:
        for node in list(model.graph):
            if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx"):
                continue
            alpha = float(node.attributes["alpha"].value) if "alpha" in node.attributes else 1.0
            beta = float(node.attributes["beta"].value) if "beta" in node.attributes else 1.0
            inputs = list(node.inputs)
            changed = False
            if alpha != 1.0:
                b = constant_array(inputs[1])
                if b is not None:
                    node.replace_input_with(1, new_initializer(model, f"{inputs[1].name}_sf", (b * alpha).astype(b.dtype)))
                    del node.attributes["alpha"]
                    changed = True
            if beta != 1.0 and len(inputs) > 2 and inputs[2] is not None:
                c = constant_array(inputs[2])
                if c is not None:
                    node.replace_input_with(2, new_initializer(model, f"{inputs[2].name}_sf", (c * beta).astype(c.dtype)))
                    del node.attributes["beta"]
                    changed = True
            if changed:
                self.stamp(node, "alpha/beta folded into constants")
                report.changed("folded-gemm-scale", "alpha/beta folded into the constant operands", node.name)
        ir.passes.common.RemoveUnusedNodesPass()(model)


class CheckWeightsPass(ReportingPass):
    """Raise a clear error for invalid models and for weight-bearing ops whose weight is not a constant."""

    name = "CheckWeights"

    def run(self, model: ir.Model, report: PassReport) -> None:
        try:
            onnx.shape_inference.infer_shapes(ir.to_proto(model), strict_mode=True, data_prop=False)
        except onnx.shape_inference.InferenceError as exc:
            detail = str(exc).strip().splitlines()[-1][:300]
            raise UnsupportedModelError(f"the model is not valid ONNX: {detail}",
                                        hint="fix the model (onnx.checker.check_model shows the details)") from None
        except Exception:  # models above the protobuf limit or exotic ops: later passes still check what they use
            pass
        for node in model.graph:
            view = view_of(node)  # raises UnsupportedModelError for non-constant Conv weights
            if view is not None:
                report.counts["weights"] += 1


def new_initializer(model: ir.Model, base_name: str, array: np.ndarray) -> ir.Value:
    """Register a new initializer holding ``array`` under a name derived from ``base_name``."""
    name = unique_name(model.graph, base_name)
    array = np.ascontiguousarray(array)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    model.graph.register_initializer(value)
    return value


def unique_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers)
    taken.update(v.name for v in graph.inputs if v.name)
    for node in graph:
        taken.update(o.name for o in node.outputs if o.name)
    if base not in taken:
        return base
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


def canonicalize_passes() -> list[ReportingPass]:
    """The canonicalization pipeline, in order."""
    return [CheckWeightsPass(), OptimizePass(), FoldBatchNormPass(), NormalizeGemmPass()]
