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

import itertools
import re
from collections.abc import Sequence

import numpy as np
import onnx
import onnx.reference
import onnx_ir as ir
import onnxscript.optimizer
from onnxscript import rewriter
from onnxscript.rewriter import pattern
from onnxscript.rewriter.rules.common import (
    fuse_batchnorm_into_conv_rule,
    fuse_batchnorm_into_gemm_rule,
)

from sparseforge.errors import UnsupportedModelError
from sparseforge.ir import keys
from sparseforge.ir.expand import function_body_false_alarm
from sparseforge.ir.weights import constant_array, runtime_weight, view_of
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
            # static shapes let the folder fold Shape/Size and the shape arithmetic behind them, and it folds a
            # node only when its output shape is known (it infers none); a graph that has neither is not re-inferred
            # here (a whole-graph inference costs seconds at 100k nodes)
            if _needs_shapes(model):
                infer_shapes(model)
            folded = onnxscript.optimizer.fold_constants(
                model, input_size_limit=FOLD_SIZE_LIMIT, output_size_limit=FOLD_SIZE_LIMIT,
                should_fold=lambda node: False if duplicates_a_shared_weight(node) else None).modified
            folded = fold_with_reference(model) or folded
            folded = collapse_idempotent_chains(model) or folded
            rules = rules_for(model)
            rewritten = bool(rules.rules) and keep_layer_names(model, lambda m: rewriter.rewrite(m, rules))
            ir.passes.common.RemoveUnusedNodesPass()(model)
            if not folded and not rewritten:
                break
        ir.passes.common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        ir.passes.common.RemoveUnusedNodesPass()(model)
        tensor_constants(model)
        infer_shapes(model)
        name_generic_weights(model)
        after = _op_histogram(model)
        report.details["nodes_before"] = sum(before.values())
        report.details["nodes_after"] = sum(after.values())
        if before != after:
            report.changed("folded", f"{sum(before.values()) - sum(after.values())} node(s) folded or removed; "
                           f"{sum(before.values())} -> {sum(after.values())} nodes")


def _needs_shapes(model: ir.Model) -> bool:
    """Whether shape inference can let the folder do more: a Shape/Size node, or a node whose inputs are all
    constants with an output of unknown shape."""
    for node in model.graph:
        if node.op_type in _SHAPE_READERS:
            return True
        inputs = [v for v in node.inputs if v is not None]
        if inputs and all(v.const_value is not None and not v.is_graph_input() for v in inputs) and \
                any(o.shape is None or not o.shape.is_static() for o in node.outputs):
            return True
    return False


#: Unary ops with ``f(f(x)) == f(x)`` exactly, for every dtype they take.
IDEMPOTENT_OPS = frozenset({"Relu", "Abs", "Floor", "Ceil", "Round", "Sign"})


def collapse_idempotent_chains(model: ir.Model) -> bool:
    """``f(f(x))`` -> ``f(x)`` for :data:`IDEMPOTENT_OPS` on the top-level graph, in one linear sweep (exact).

    onnxscript's rewriter fuses ``Relu(Relu(x))`` too, but at a fraction of a millisecond per match; a
    100,000-node chain took 16 s. An inner node whose output feeds only the outer one (and is no graph output)
    is bypassed and removed; the outer node keeps its name and output."""
    changed = False
    for node in list(model.graph):
        if node.op_type not in IDEMPOTENT_OPS or node.domain not in ("", "ai.onnx") or not node.inputs:
            continue
        inner = node.inputs[0].producer() if node.inputs[0] is not None else None
        if inner is None or inner.op_type != node.op_type or inner.domain != node.domain or inner.attributes:
            continue
        value = inner.outputs[0]
        if value.is_graph_output() or len(value.uses()) != 1:
            continue
        node.replace_input_with(0, inner.inputs[0])
        model.graph.remove(inner, safe=True)
        changed = True
    return changed


#: Ops whose folding needs the inferred shape of their input.
_SHAPE_READERS = frozenset({"Shape", "Size"})

#: Constants below this many elements may be duplicated by folding (shape arithmetic, small tables).
SHARED_WEIGHT_ELEMENTS = 1024


def duplicates_a_shared_weight(node: ir.Node) -> bool:
    """Whether folding ``node`` would copy a weight that stays alive for other users: an initializer input of
    at least :data:`SHARED_WEIGHT_ELEMENTS` elements that other nodes (or the graph outputs) also read. A tied
    embedding / LM-head weight (``Gather(W)`` and ``MatMul(h, Transpose(W))``) must stay one tensor."""
    for value in node.inputs:
        if value is None or value.const_value is None or value.is_graph_input():
            continue
        if value.const_value.size < SHARED_WEIGHT_ELEMENTS:
            continue
        if value.is_graph_output() or any(user is not node for user, _ in value.uses()):
            return True
    return False


#: Ops never folded by evaluation: random, or with subgraphs.
_NOT_FOLDED = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
                         "Multinomial", "If", "Loop", "Scan", "SequenceMap", "Dropout"})


def _output_elements(node: ir.Node, feeds: dict) -> float:
    """Elements of the node's largest output, from its inferred static shapes (``ConstantOfShape`` from its shape
    input); infinity when unknown, so nodes of unknown output size are not evaluated."""
    if node.op_type == "ConstantOfShape":
        shape_value = next(iter(feeds.values()), np.zeros(0))
        return float(np.prod(shape_value.astype(np.float64))) if shape_value.size else 1.0
    sizes = []
    for value in node.outputs:
        if value.shape is None or not all(isinstance(d, int) for d in value.shape):
            return float("inf")
        sizes.append(float(np.prod([float(d) for d in value.shape])))
    return max(sizes, default=0.0)


def fold_with_reference(model: ir.Model) -> bool:
    """Evaluate, with ``onnx.reference``, top-level default-domain nodes whose inputs are all initializers and that
    onnxscript's folder left (``ConstantOfShape``, ...): weights computed from constants become initializers.
    Outputs above :data:`FOLD_SIZE_LIMIT` elements are left. Returns whether anything was folded."""
    graph, changed = model.graph, False
    for node in list(graph):
        if node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDED or node.op_type == "Constant":
            continue
        inputs = list(node.inputs)
        if not inputs or any(v is not None and (v.const_value is None or v.is_graph_input()) for v in inputs):
            continue
        if any(v.is_graph_output() for v in node.outputs) or duplicates_a_shared_weight(node):
            continue
        feeds = {v.name: v.const_value.numpy() for v in inputs if v is not None}
        if _output_elements(node, feeds) > FOLD_SIZE_LIMIT:
            continue  # bounded before evaluating: a corrupt shape must not allocate terabytes
        proto = ir.serde.serialize_node(node)
        try:
            outputs = onnx.reference.ReferenceEvaluator(
                onnx.helper.make_model(onnx.helper.make_graph(
                    [proto], "fold", [onnx.helper.make_tensor_value_info(n, 0, None) for n in feeds],
                    [onnx.helper.make_tensor_value_info(o.name, 0, None) for o in node.outputs]),
                    opset_imports=[onnx.helper.make_opsetid("", int(model.opset_imports.get("", 13)))])
            ).run(None, feeds)
        except Exception:  # noqa: BLE001 - an op the reference cannot evaluate stays in the graph
            continue
        if any(np.asarray(o).size > FOLD_SIZE_LIMIT or np.asarray(o).dtype == object for o in outputs):
            continue
        for value, array in zip(list(node.outputs), outputs):
            constant = ir.Value(name=value.name, shape=ir.Shape(np.shape(array)),
                                const_value=ir.tensor(np.asarray(array), name=value.name))
            constant.dtype = constant.const_value.dtype
            value.replace_all_uses_with(constant)
            value.name = None
            graph.register_initializer(constant)
        graph.remove(node, safe=True)
        changed = True
    return changed


_CONSTANT_ATTRS = {
    "value_int": (ir.DataType.INT64, "as_int"), "value_ints": (ir.DataType.INT64, "as_ints"),
    "value_float": (ir.DataType.FLOAT, "as_float"), "value_floats": (ir.DataType.FLOAT, "as_floats"),
}


def tensor_constants(model: ir.Model) -> None:
    """Constant nodes left after lifting (those that are graph outputs) hold their tensor in ``value``.

    Folding ``Shape``/``Size`` yields ``Constant(value_ints=...)``; a graph output cannot become an initializer,
    and TVM's importer reads only ``value``. Same tensor, same dtype (int64 / float32, as the ONNX spec says).
    """
    for node in model.graph:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attributes) != 1:
            continue
        (attr_name, attr), = node.attributes.items()
        if attr_name not in _CONSTANT_ATTRS:
            continue
        dtype, getter = _CONSTANT_ATTRS[attr_name]
        tensor = ir.tensor(getattr(attr, getter)(), dtype=dtype, name=node.outputs[0].name)
        del node.attributes[attr_name]
        node.attributes["value"] = ir.AttrTensor("value", tensor)


class LocalMultiOutputMatcher(pattern.SimplePatternMatcher):
    """onnxscript's matcher, with the candidates of multi-output patterns taken from the node's neighbours.

    For a pattern with several output nodes (``SlicesSplit``: two Slices of one tensor) onnxscript's
    ``SimplePatternMatcher`` indexes the *whole graph* by op type for every node it is asked about, so one
    rewrite sweep costs O(nodes^2) (the issue "Scale with the graph": 66 of 70 s at 8,000 nodes). When every
    other output node shares an input variable with the first one, only the consumers of that input can
    match; this matcher tries exactly those, in graph order, through the same ``_multi_match``, so it finds the
    same first match. Other patterns go to the upstream implementation unchanged.
    """

    def __init__(self, graph_pattern) -> None:
        super().__init__(graph_pattern)
        self._shared: list[tuple[int, int, tuple | None]] | None = None
        if not graph_pattern.has_single_output_node:
            first, *others = graph_pattern.output_nodes
            shared = []
            for other in others:
                links = [(i, j) for i, v in enumerate(first.inputs) for j, w in enumerate(other.inputs)
                         if v is not None and v is w]
                if not links or other.op_identifier() is None:
                    break
                shared.append((*links[0], other.op_identifier()))
            else:
                self._shared = shared
        self._positions: dict[ir.Node, int] = {}
        self._positions_of: object = None

    def reset(self) -> None:
        """Forget the graph order cached for the previous sweep."""
        self._positions, self._positions_of = {}, None

    def _in_graph_order(self, graph_or_function, nodes: list[ir.Node]) -> list[ir.Node]:
        if len(nodes) < 2:
            return nodes
        if self._positions_of is not graph_or_function or any(n not in self._positions for n in nodes):
            self._positions = {n: i for i, n in enumerate(graph_or_function)}
            self._positions_of = graph_or_function
        return sorted(nodes, key=self._positions.__getitem__)

    def match(self, model, graph_or_function, node, *, verbose=0, remove_nodes=True, tracer=None):
        if self._shared is None:
            return super().match(model, graph_or_function, node, verbose=verbose, remove_nodes=remove_nodes,
                                 tracer=tracer)
        self._tracer = tracer
        self._graph = graph_or_function if isinstance(graph_or_function, ir.Graph) else graph_or_function.graph
        candidates: list[list[ir.Node]] = [[node]]
        for i, j, op_id in self._shared:
            value = node.inputs[i] if i < len(node.inputs) else None
            users = [] if value is None else list(dict.fromkeys(
                user for user, index in value.uses() if index == j and user.op_identifier() == op_id))
            candidates.append(self._in_graph_order(graph_or_function, users))
        match = None
        for combination in itertools.product(*candidates):
            self._init_match(verbose)
            match = self._multi_match(combination, check_removable=remove_nodes)
            if match:
                return match
        return match if match is not None else pattern.MatchResult().fail("No match found.")


class RootOpRule(pattern.RewriteRule):
    """A rewrite rule that declines, in one dictionary lookup, nodes whose op type its pattern cannot match.

    ``RewriteRuleSet`` tries every rule on every node; onnxscript's matcher rejects an op-type mismatch only
    after setting up a match (a few microseconds), which for ~45 default rules is most of a sweep's time. The
    op-type test is the matcher's own first test (``NodePattern.matches``), so the rule matches exactly the
    same nodes.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._root_op = self._target_pattern.output_nodes[0].op
        self._accepts: dict[str, bool] = {}

    def try_rewrite(self, model, graph_or_function, node, *, verbose=None, tracer=None):
        accepted = self._accepts.get(node.op_type)
        if accepted is None:
            accepted = self._accepts[node.op_type] = bool(self._root_op.matches(node.op_type))
        if not accepted and tracer is None:
            return None
        delta = super().try_rewrite(model, graph_or_function, node, verbose=verbose, tracer=tracer)
        if delta is not None and tracer is None and self.remove_nodes and self.name and not delta.new_initializers:
            _dedupe_rule_names(self.name, delta.match.nodes)
        return delta


def _dedupe_rule_names(rule_name: str, matched: Sequence[ir.Node]) -> None:
    """Make the rewriter's merged rule-name tag name each rule once.

    The rewriter tags a replacement node with ``"<rule>, <tags of the matched nodes>"``, so a rule applied
    along a chain (Relu(Relu(...)) fused 100,000 times) builds a string as long as the chain, one copy per
    step: quadratic time and a megabyte of metadata. The matched nodes are about to be removed; their tags
    are rewritten so that the merge yields each rule name once, in first-seen order (identical whenever no
    rule repeats along a chain of rewrites).
    """
    names: dict[str, None] = {rule_name: None}
    tagged = [n for n in matched if n.metadata_props.get(rewriter.RULE_NAME_TAG)]
    if not tagged:
        return
    for n in tagged:
        names.update(dict.fromkeys(n.metadata_props[rewriter.RULE_NAME_TAG].split(", ")))
    rest = ", ".join(list(names)[1:])
    for i, n in enumerate(tagged):
        n.metadata_props[rewriter.RULE_NAME_TAG] = rest if i == 0 else ""


def scalable(rule: pattern.RewriteRule) -> pattern.RewriteRule:
    """``rule`` as a :class:`RootOpRule`, multi-output patterns matched by :class:`LocalMultiOutputMatcher`."""
    graph_pattern = rule._target_pattern
    matcher = rule._matcher
    pre = upstream_pre = rule.graph_pre_visitor
    if not graph_pattern.has_single_output_node:
        local = matcher = LocalMultiOutputMatcher(graph_pattern)

        def pre(upstream_pre=upstream_pre) -> None:
            local.reset()
            if upstream_pre is not None:
                upstream_pre()
    return RootOpRule(graph_pattern, rule._replacement_pattern, rule._condition_function, matcher,
                      name=rule.name, remove_nodes=rule.remove_nodes, graph_pre_visitor=pre,
                      graph_post_visitor=rule.graph_post_visitor, as_function=rule.as_function)


_DEFAULT_RULES: pattern.RewriteRuleSet | None = None


def default_rules() -> pattern.RewriteRuleSet:
    """onnxscript's default rewrite rules, in their order, multi-output patterns matched locally."""
    global _DEFAULT_RULES
    if _DEFAULT_RULES is None:
        _DEFAULT_RULES = pattern.RewriteRuleSet([scalable(r) for r in rewriter._DEFAULT_REWRITE_RULES])
    return _DEFAULT_RULES


_RULES_FOR: dict[frozenset[str], "pattern.RewriteRuleSet | _NoRules"] = {}


class _NoRules:
    """No default rule applies (onnxscript's rule sets cannot be empty)."""

    rules: tuple = ()


_NO_RULES = _NoRules()


def rules_for(model: ir.Model) -> pattern.RewriteRuleSet | _NoRules:
    """The default rules whose root op type occurs in ``model`` (any graph or function), in their order.

    A sweep tries every rule on every node; rules whose root op is absent can match nothing already there, and
    what a sweep's rewrites create is swept again by the next round of :class:`OptimizePass`. A 100,000-node
    Relu chain meets 4 rules instead of about 45."""
    present = {node.op_type for node in ir.traversal.RecursiveGraphIterator(model.graph)}
    for function in model.functions.values():
        present.update(node.op_type for node in ir.traversal.RecursiveGraphIterator(function))
    key = frozenset(present)
    if key not in _RULES_FOR:
        if len(_RULES_FOR) > 64:
            _RULES_FOR.clear()
        rules = [r for r in default_rules().rules if any(r._root_op.matches(op) for op in key)]
        _RULES_FOR[key] = pattern.RewriteRuleSet(rules) if rules else _NO_RULES
    return _RULES_FOR[key]


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
        rules = rewriter.RewriteRuleSet([scalable(fuse_batchnorm_into_conv_rule), scalable(fuse_batchnorm_into_gemm_rule)])
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


def _strict_inference_problem(proto: onnx.ModelProto) -> str | None:
    """The last line of ONNX's strict shape inference error for ``proto``, or None. Models above the protobuf
    limit or with exotic ops are not refused here: later passes still check what they use."""
    try:
        onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=False)
    except onnx.shape_inference.InferenceError as exc:
        return str(exc).strip().splitlines()[-1][:300]
    except Exception:  # noqa: BLE001
        return None
    return None


class CheckWeightsPass(ReportingPass):
    """Raise a clear error for invalid models; note weight-bearing ops whose weight is computed at run time."""

    name = "CheckWeights"

    def run(self, model: ir.Model, report: PassReport) -> None:
        if not model.meta.get(keys.META_CHECKED):  # the loader's full check already ran this inference
            proto = ir.to_proto(model)
            detail = _strict_inference_problem(proto)
            if detail is not None and not function_body_false_alarm(proto, detail, _strict_inference_problem):
                raise UnsupportedModelError(f"the model is not valid ONNX: {detail}",
                                            hint="fix the model (onnx.checker.check_model shows the details)")
        for node in model.graph:
            if view_of(node) is not None:
                report.counts["weights"] += 1
            elif (why := runtime_weight(node)) is not None:
                report.counts["runtime weights"] += 1
                report.note("skip-runtime-weight", why, node.name)


_BIG_TENSOR_BYTES = 1000  # onnx-ir's _c_api_utils._BIG_TENSOR_SIZE_LIMIT


def infer_shapes(model: ir.Model) -> bool:
    """``onnx_ir.passes.common.ShapeInferencePass()(model)``, in linear time; returns whether shapes changed.

    Same steps and result: initializers become graph inputs, tensors over 1 KB are left out of the proto given to
    ``onnx.shape_inference.infer_shapes`` (check_type, strict_mode, data_prop), inferred shapes and types are
    merged into the values, the model is restored. onnx-ir tests ``initializer not in graph.inputs`` on a list
    that grows with every initializer appended (O(initializers^2): 7.6 s of a 32k-node transformer's export);
    here that test is a set. Inference failures leave the model unchanged, as in onnx-ir.
    """
    graph = model.graph
    initializers = tuple(graph.initializers.values())
    tensors = {v.name: v.const_value for v in initializers}
    original_inputs = list(graph.inputs)
    present = set(original_inputs)
    for value in initializers:
        if value.const_value is not None:
            if value.shape is None:
                value.shape = value.const_value.shape
            if value.dtype is None:
                value.dtype = value.const_value.dtype
        if value not in present:
            graph.inputs.append(value)
            present.add(value)
        if value.const_value is None:
            graph.initializers.pop(value.name)
        elif value.const_value.nbytes > _BIG_TENSOR_BYTES:
            value.const_value = None
            graph.initializers.pop(value.name)
    try:
        proto = ir.serde.serialize_model(model)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception:  # noqa: BLE001 - as onnx-ir: a model shape inference rejects is left unchanged
        inferred = None
    finally:
        for value in initializers:
            value.const_value = tensors[value.name]
            if value.const_value is not None:
                graph.register_initializer(value)
            else:
                graph.initializers.add(value)
        graph.inputs.clear()
        graph.inputs.extend(original_inputs)
    if inferred is None:
        return False
    modified = False
    for original_graph, inferred_graph in zip(model.graphs(), ir.serde.deserialize_model(inferred).graphs()):
        inferred_values = ir.convenience.create_value_mapping(inferred_graph)
        for name, value in ir.convenience.create_value_mapping(original_graph).items():
            other = inferred_values.get(name)
            if other is None:
                continue
            if value.shape != other.shape and other.shape is not None:
                value.shape = other.shape
                modified = True
            if value.dtype != other.dtype and other.dtype is not None:
                value.dtype = other.dtype
                modified = True
    return modified


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
