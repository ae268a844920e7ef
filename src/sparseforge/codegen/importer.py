"""ONNX -> Relax: TVM's ONNX importer, extended (by subclassing) for sparseforge's ``ai.sparseforge`` ops.

Standard ops go through sparseforge's own converters where TVM's lack an op or get it wrong
(:mod:`sparseforge.codegen.converters`), else through TVM's. Each sparse op becomes a ``relax.call_tir`` of a TIR
kernel specialized to its constant weight (:mod:`sparseforge.codegen.kernels`), marked ``tirx.is_scheduled`` so the
rest of the pipeline leaves it alone. A single-consumer activation right after a sparse op (Relu, Clip(0, 6),
Sigmoid, Tanh, Gelu, x*Sigmoid(x)) is fused into the kernel's write-back. Before anything is converted, the whole
graph is scanned and every unsupported operator is reported in one :class:`~sparseforge.errors.UnsupportedOpError`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from sparseforge.errors import UnsupportedOpError
from sparseforge.ir import forms, keys, ops
from sparseforge.ir.conv import ConvSpec
from sparseforge.ir.forms import fft_conv

from . import _tvm, contract, fusion, precision
from .converters import CONVERTERS
from .converters._util import DEFER
from . import kernels as K
from .kernels import activations
from .converters import fft_conv as fft_grouped
from .kernels import fft_conv as fft_kernels
from .kernels import rules as R
from .schedules.relax_conv import _imap

relax = _tvm.relax
onnx_frontend = _tvm.onnx_frontend


@dataclasses.dataclass
class KernelRecord:
    """One sparse kernel emitted for one ONNX node (for reports and manifests)."""

    node: str
    op_type: str
    kernel: str
    fmt: str
    activation: str
    info: dict


def _fused_activation(graph: onnx.GraphProto) -> tuple[dict[str, str], dict[str, str]]:
    """Plan activation fusion: {sparse node name: activation}, {absorbed node name: sparse output it aliases}."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    inits = {t.name: t for t in graph.initializer}
    fused: dict[str, str] = {}
    absorbed: dict[str, str] = {}
    for node in graph.node:
        if node.domain != keys.DOMAIN:
            continue
        out = node.output[0]
        users = consumers.get(out, [])
        if out in graph_outputs or len(users) not in (1, 2):
            continue
        activation, eaten = _match_activation(users, out, inits, consumers, graph_outputs)
        if activation is None:
            continue
        fused[node.name] = activation
        for n in eaten:
            absorbed[n.name] = out
    return fused, absorbed


def _scalar(name: str, inits: dict[str, onnx.TensorProto]) -> float | None:
    tensor = inits.get(name)
    if tensor is None:
        return None
    array = numpy_helper.to_array(tensor)
    return float(array.reshape(-1)[0]) if array.size == 1 else None


def _match_activation(users, out, inits, consumers, graph_outputs):
    if len(users) == 1:
        user = users[0]
        op = user.op_type
        if op == "Gelu":
            approx = next((a.s.decode() for a in user.attribute if a.name == "approximate"), "none")
            return ("gelu", [user]) if approx == "none" else (None, [])
        if op in activations.BY_ONNX_OP:
            return activations.BY_ONNX_OP[op], [user]
        if op == "Clip" and len(user.input) >= 3:
            lo, hi = _scalar(user.input[1], inits), _scalar(user.input[2], inits)
            if lo == 0.0 and hi == 6.0:
                return "relu6", [user]
            if lo == 0.0 and hi is None and user.input[2] == "":
                return "relu", [user]
        return None, []
    # x * sigmoid(x): users are Sigmoid(out) and Mul(out, sigmoid)
    sig = next((u for u in users if u.op_type == "Sigmoid"), None)
    mul = next((u for u in users if u.op_type == "Mul"), None)
    if sig is None or mul is None or sig.output[0] in graph_outputs:
        return None, []
    if set(mul.input) == {out, sig.output[0]} and len(consumers.get(sig.output[0], [])) == 1:
        return "silu", [sig, mul]
    return None, []


def _has_converter(op_type: str, convert_map) -> bool:
    return op_type in convert_map or op_type in CONVERTERS or op_type in ("If", "Constant")


def lowers(domain: str, op_type: str) -> bool:
    """Whether a standard-domain ``op_type`` has a converter (TVM's or sparseforge's) that the op contract does not
    refuse outright. Ops for which this is False are expanded into their ONNX function bodies where they have one
    (:func:`sparseforge.ir.expand.expand_functions`)."""
    if domain not in ("", "ai.onnx"):
        return True
    return _has_converter(op_type, onnx_frontend._get_convert_map()) and op_type not in contract.REFUSED_OPS


class SparseforgeImporter(onnx_frontend.ONNXGraphImporter):
    """TVM's ONNX importer plus ``ai.sparseforge`` ops lowered to specialized TIR kernels."""

    def __init__(self, shape_dict, dtype_dict, *, kernel_target, rules=None, builders=None, fuse: bool = True,
                 **kwargs):
        super().__init__(shape_dict, dtype_dict, **kwargs)
        self.kernel_target = kernel_target
        self.fuse = fuse
        if rules is None:
            rules = R.CPU_RULES if builders is None or builders is K else R.rules_from_builders(builders)
        self.rules = tuple(rules)
        self.records: list[KernelRecord] = []
        self._fused: dict[str, str] = {}
        self._absorbed: dict[str, str] = {}
        self._depthwise: dict[str, fusion.DepthwisePlan] = {}
        self._dense_expansions: dict[str, fusion.DenseExpansion] = {}
        self._mlps: dict[str, fusion.MlpPlan] = {}
        self._used_names: set[str] = set()

    def from_onnx(self, graph, opset):
        proto_graph = graph.graph if hasattr(graph, "graph") else graph
        self._fused, self._absorbed = _fused_activation(proto_graph)
        if self.fuse and R.target_lanes(self.kernel_target):
            self._depthwise = fusion.plan_depthwise(proto_graph, self._fused, self._absorbed, _match_activation)
            self._dense_expansions = fusion.plan_dense_expansions(proto_graph, self._absorbed, _match_activation)
            self._mlps = fusion.plan_mlps(proto_graph, self._fused, self._absorbed)
        self._check_for_unsupported_ops(graph.graph if hasattr(graph, "graph") else graph)
        return super().from_onnx(graph, opset)

    def _check_for_unsupported_ops(self, graph: onnx.GraphProto) -> None:
        convert_map = onnx_frontend._get_convert_map()
        missing: Counter[str] = Counter()
        where: dict[str, str] = {}
        for node in graph.node:
            op = node.op_type
            if node.domain == keys.DOMAIN:
                if op not in ops.ALL_OP_TYPES:
                    missing[f"{keys.DOMAIN}.{op}"] += 1
                    where.setdefault(f"{keys.DOMAIN}.{op}", node.name)
                continue
            if node.domain not in ("", "ai.onnx"):
                missing[f"{node.domain}.{op}"] += 1
                where.setdefault(f"{node.domain}.{op}", node.name)
            elif not _has_converter(op, convert_map):
                missing[op] += 1
                where.setdefault(op, node.name)
        refused = contract.violations(graph)
        if missing or refused:
            parts = []
            if missing:
                listing = ", ".join(f"{op} (x{n}, e.g. node '{where[op]}')" for op, n in sorted(missing.items()))
                parts.append(f"the model uses operators TVM's ONNX importer cannot lower: {listing}")
            if refused:
                listing = "; ".join(f"{op} node '{name}': {reason}" for op, name, reason in refused[:20])
                more = f" (and {len(refused) - 20} more)" if len(refused) > 20 else ""
                parts.append(f"outside what sparseforge compiles correctly: {listing}{more}")
            bindable = contract.bindable_inputs(graph) if refused else []
            hint = ("export the model with standard ONNX ops (opset 13-21), fp32 tensors and constant shape/axes "
                    "inputs, or replace these layers")
            if bindable:
                hint = (f"if {', '.join(repr(n) for n in bindable)} always take the same value, fix them with "
                        f"--bind NAME=VALUES (e.g. --bind {bindable[0]}=1); otherwise {hint}")
            error = UnsupportedOpError("; ".join(parts), hint=hint)
            error.bindable = tuple(bindable)
            raise error

    def _convert_operator(self, op_name, inputs, attrs, opset):
        node_name = attrs.get("tvm_custom", {}).get("name", "")
        if node_name in self._absorbed:
            return inputs[0] if op_name != "Mul" else self._nodes[self._absorbed[node_name]]
        if op_name in ops.OP_TYPES:
            return self._convert_sparse(op_name, node_name, inputs, attrs)
        if op_name == fft_conv.OP_TYPE:
            return self._convert_fft_conv(node_name, inputs)
        if node_name in self._dense_expansions:
            fused = self._dense_expand_depthwise(inputs[0], self._dense_expansions[node_name], node_name)
            if fused is not None:
                return fused
        low = precision.low_float_dtype(op_name, inputs)
        if low is None:
            return self._convert_standard(op_name, inputs, attrs, opset)
        wide = precision.widen(self.bb, inputs)
        return precision.narrow(self.bb, self._convert_standard(op_name, wide, attrs, opset), low)

    def _convert_standard(self, op_name, inputs, attrs, opset):
        converter = CONVERTERS.get(op_name)
        if converter is not None:
            custom = attrs.setdefault("tvm_custom", {})
            custom["opset"] = opset
            custom["kernel_target"] = self.kernel_target if R.target_lanes(self.kernel_target) else None
            result = converter(self.bb, inputs, attrs)
            if result is not DEFER:
                return self.bb.normalize(result) if isinstance(result, relax.Expr) else result
        return super()._convert_operator(op_name, inputs, attrs, opset)

    # ------------------------------------------------------------------ sparse ops

    def _constant(self, expr, what: str, node: str) -> np.ndarray:
        if not isinstance(expr, _tvm.tvm.ir.expr.Constant):
            raise UnsupportedOpError(f"the {what} of sparse node '{node}' is not a constant")
        return expr.value.numpy()

    def _kernel_name(self, node_name: str) -> str:
        base = "sf_" + "".join(ch if ch.isalnum() else "_" for ch in node_name)[:60]
        name, i = base, 1
        while name in self._used_names:
            i += 1
            name = f"{base}_{i}"
        self._used_names.add(name)
        return name

    def _convert_sparse(self, op_name: str, node_name: str, inputs, attrs):
        fmt, kind = ops.op_format(op_name)
        x = inputs[0]
        values, indices, dims, bias = (self._constant(inputs[i], w, node_name)
                                       for i, w in ((1, "values"), (2, "indices"), (3, "dims"), (4, "bias")))
        operand = forms.wrap(fmt, values, indices, dims)
        n_out, k = operand.shape
        activation = self._fused.get(node_name, "none")
        x_shape = [int(d) for d in x.ty.shape]
        spec = None
        if kind == "matmul":
            m = int(np.prod(x_shape[:-1])) if len(x_shape) > 1 else 1
            op_shape, out_shape = (m, k), tuple(x_shape[:-1]) + (n_out,)
        elif kind == "conv":
            spec = _conv_spec(attrs, x_shape, n_out, node_name)
            op_shape, out_shape = tuple(x_shape), spec.out_shape
        else:
            op_shape, out_shape = tuple(x_shape), (x_shape[0], n_out, x_shape[2], x_shape[3])
        op = R.SparseOp(fmt, kind, operand, op_shape, bias if np.any(bias) else None, activation,
                        self._kernel_name(node_name), conv=spec)
        rule = R.select(self.rules, op, self.kernel_target)
        if getattr(rule, "layout", None) == "NCHWc":
            plan = self._depthwise.get(node_name) if kind == "conv1x1" else None
            if plan is not None and fusion.worthwhile(x_shape, R.target_lanes(self.kernel_target), plan,
                                                      activation):
                return self._expand_depthwise(x, op, plan, node_name, op_name)
            return self._conv_nchwc(x, op, rule, node_name, op_name)
        if kind == "matmul" and node_name in self._mlps:
            y = self._fused_mlp(x, op, self._mlps[node_name], node_name, op_name, x_shape)
            if y is not None:
                return y
        kernel = rule.build(op, self.kernel_target)
        if kernel is None:
            return self._dense(x, op, node_name, op_name)
        x2 = x if kind != "matmul" or len(x_shape) == 2 else self.bb.emit(relax.op.reshape(x, op_shape))
        gv = self.bb.add_func(kernel.func, kernel.name)
        consts = [relax.const(c) for c in kernel.constants]
        y = self.bb.emit(relax.call_tir(gv, [x2, *consts], relax.TensorType(kernel.out_shape, "float32")))
        if tuple(kernel.out_shape) != out_shape:
            y = self.bb.emit(relax.op.reshape(y, out_shape))
        self.records.append(KernelRecord(node_name, op_name, kernel.name, fmt, activation, dict(kernel.info)))
        return y

    def _fused_mlp(self, x, op, plan: fusion.MlpPlan, node_name, op_name, x_shape):
        """A sparse MatMul and the sparse MatMul reading its output (an MLP's two Linears) as one kernel
        (:mod:`.kernels.mlp`), which absorbs the second node; None where the pair does not fuse (both then convert
        on their own)."""
        m, _ = op.x_shape
        second = forms.wrap(plan.fmt, plan.values, plan.indices, plan.dims)
        n1, n2 = op.operand.shape[0], second.shape[0]
        if op.form not in fusion.MLP_FORMATS or second.shape[1] != n1 or not fusion.mlp_worthwhile(m):
            return None
        kernel = K.sparse_mlp(op.operand, second, m, bias1=op.bias, activation1=op.activation,
                              bias2=plan.bias if np.any(plan.bias) else None, activation2=plan.activation,
                              target=self.kernel_target, name=op.name)
        x2 = x if len(x_shape) == 2 else self.bb.emit(relax.op.reshape(x, op.x_shape))
        gv = self.bb.add_func(kernel.func, kernel.name)
        consts = [relax.const(c) for c in kernel.constants]
        y = self.bb.emit(relax.call_tir(gv, [x2, *consts], relax.TensorType(kernel.out_shape, "float32")))
        out_shape = tuple(x_shape[:-1]) + (n2,)
        if tuple(kernel.out_shape) != out_shape:
            y = self.bb.emit(relax.op.reshape(y, out_shape))
        self._absorbed[plan.node] = plan.node  # the second node returns its input: this kernel's output
        self.records.append(KernelRecord(node_name, op_name, kernel.name, op.form, op.activation,
                                         dict(kernel.info, fused=plan.node, fused_activation=plan.activation)))
        return y

    def _convert_fft_conv(self, node_name: str, inputs):
        """``FftConv``: on CPU targets the depthwise FFT kernel, or for more than one input channel per group FFTs
        around batched products per frequency; elsewhere (CUDA) four-step FFTs (dense products) around the
        products."""
        x = inputs[0]
        weight, bias, plan = (self._constant(inputs[i], w, node_name)
                              for i, w in ((1, "weight"), (2, "bias"), (3, "plan")))
        x_shape = tuple(int(d) for d in x.ty.shape)
        pads = fft_conv.pads_of(plan, x_shape[-1], weight.shape[-1])
        groups = x_shape[1] // weight.shape[1]
        if R.target_lanes(self.kernel_target) is None:
            self.records.append(KernelRecord(node_name, fft_conv.OP_TYPE, "fft", "fft", "none",
                                             dict(format="fft", variant="four-step", groups=groups)))
            return fft_grouped.grouped(self.bb, x, weight, bias, pads, None)
        if weight.shape[1] != 1 or weight.shape[0] != x_shape[1]:
            self.records.append(KernelRecord(node_name, fft_conv.OP_TYPE, "fft", "fft", "none",
                                             dict(format="fft", variant="grouped-spectral", groups=groups)))
            return fft_grouped.grouped(self.bb, x, weight, bias, pads, self.kernel_target)
        kernel = fft_kernels.fft_conv1d(weight, x_shape, pads=pads, bias=bias, target=self.kernel_target,
                                        name=self._kernel_name(node_name))
        gv = self.bb.add_func(kernel.func, kernel.name)
        consts = [relax.const(c) for c in kernel.constants]
        y = self.bb.emit(relax.call_tir(gv, [x, *consts], relax.TensorType(kernel.out_shape, "float32")))
        self.records.append(KernelRecord(node_name, fft_conv.OP_TYPE, kernel.name, "fft", "none", dict(kernel.info)))
        return y

    def _dense(self, x, op, node_name, op_name):
        """The dense fallback: the decoded weight through TVM's own MatMul / Conv lowering, bias and activation
        applied as Relax ops."""
        w = forms.get(op.form).decode(op.operand).astype(np.float32)
        if op.kind == "matmul":
            y = self.bb.emit(relax.op.matmul(x, relax.const(np.ascontiguousarray(w.T))))
        elif op.kind == "conv":
            spec = op.conv
            w4 = relax.const(np.ascontiguousarray(w.reshape(spec.cout, spec.cin_per_group, *spec.kernel)))
            y = self.bb.emit(relax.op.nn.conv2d(x, w4, strides=spec.strides, padding=spec.pads,
                                                dilation=spec.dilations, groups=spec.group))
        else:
            y = self.bb.emit(relax.op.nn.conv2d(x, relax.const(w.reshape(w.shape + (1, 1)))))
        if op.bias is not None:
            shape = (-1,) if op.kind == "matmul" else (-1, 1, 1)
            y = self.bb.emit(relax.op.add(y, relax.const(op.bias.reshape(shape))))
        y = self.bb.emit(activations.get(op.activation).relax(relax.op, y)) if op.activation != "none" else y
        self.records.append(KernelRecord(node_name, op_name, "dense", op.form, op.activation,
                                         dict(format="dense", variant="dense-fallback")))
        return y

    def _conv_nchwc(self, x, op, rule, node_name, op_name):
        """A sparse conv in the CPU pipeline's NCHW{lanes}c layout, between explicit layout transforms.

        The NCHWc pass (``schedules/relax_conv.py``) cancels these transforms against its own, so neighbouring
        dense convolutions, depthwise convolutions and elementwise ops stay blocked across the sparse layer.
        """
        kernel = rule.build(op, self.kernel_target)
        self.records.append(KernelRecord(node_name, op_name, kernel.name, op.form, op.activation,
                                         dict(kernel.info, layout=f"NCHW{R.target_lanes(self.kernel_target)}c")))
        return self._call_nchwc(x, kernel, op.operand.shape[0])

    def _call_nchwc(self, x, kernel, n_out: int):
        """``kernel`` (NCHW{lanes}c in and out) called on the NCHW ``x`` between layout transforms, and its output
        back in NCHW with ``n_out`` channels."""
        lanes = R.target_lanes(self.kernel_target)
        xb = self.bb.emit(relax.op.layout_transform(
            x, _imap(lambda n, c, hh, ww: (n, c // lanes, hh, ww, c % lanes), 4), pad_value=0.0))
        gv = self.bb.add_func(kernel.func, kernel.name)
        consts = [relax.const(c) for c in kernel.constants]
        yb = self.bb.emit(relax.call_tir(gv, [xb, *consts], relax.TensorType(kernel.out_shape, "float32")))
        y = self.bb.emit(relax.op.layout_transform(yb, _imap(lambda n, cb, hh, ww, c: (n, cb * lanes + c, hh, ww), 5)))
        if kernel.out_shape[1] * lanes != n_out:
            y = self.bb.emit(relax.op.strided_slice(y, [1], [0], [n_out]))
        return y


    def _expand_depthwise(self, x, op, plan: fusion.DepthwisePlan, node_name, op_name):
        """A sparse 1x1 conv and the depthwise conv after it as one kernel (:mod:`.kernels.expand_depthwise`)."""
        b, _, h, w = op.x_shape
        kernel = K.expand_depthwise_nchwc(
            op.operand, plan.weight, b, h, w, strides=plan.strides, pads=plan.pads, bias=op.bias,
            activation=op.activation, dw_bias=plan.bias, dw_activation=plan.activation,
            lanes=R.target_lanes(self.kernel_target), block=R.conv_block(op), target=self.kernel_target,
            name=op.name)
        self.records.append(KernelRecord(node_name, op_name, kernel.name, op.form, op.activation,
                                         self._fused_info(kernel, plan)))
        return self._call_fused(x, kernel, op.operand.shape[0], plan)

    def _dense_expand_depthwise(self, x, plan: fusion.DenseExpansion, node_name):
        """A standard 1x1 conv (its activation) and the depthwise conv after it as one kernel, the dense weight
        as BSR 4x1 blocks, all present; None (convert as usual) where the fusion does not pay or does not apply."""
        ty = x.ty
        if not isinstance(ty, relax.TensorType) or str(ty.dtype) != "float32" or ty.shape is None:
            return None
        try:
            b, _, h, w = (int(d) for d in ty.shape.values)
        except (TypeError, ValueError):
            return None
        if not fusion.worthwhile((b, 0, h, w), R.target_lanes(self.kernel_target), plan.depthwise, plan.activation):
            return None
        dw = plan.depthwise
        kernel = K.expand_depthwise_nchwc(
            plan.weight, dw.weight, b, h, w, strides=dw.strides, pads=dw.pads, bias=plan.bias,
            activation=plan.activation, dw_bias=dw.bias, dw_activation=dw.activation,
            lanes=R.target_lanes(self.kernel_target), block=fusion.DENSE_BLOCK, target=self.kernel_target,
            name=self._kernel_name(node_name))
        for name in plan.activation_nodes:
            self._absorbed[name] = plan.output
        self.records.append(KernelRecord(node_name, "Conv", kernel.name, "dense", plan.activation,
                                         self._fused_info(kernel, dw)))
        return self._call_fused(x, kernel, plan.weight.shape[0], dw)

    def _fused_info(self, kernel, plan: fusion.DepthwisePlan) -> dict:
        lanes = R.target_lanes(self.kernel_target)
        return dict(kernel.info, layout=f"NCHW{lanes}c", fused=plan.node, fused_activation=plan.activation)

    def _call_fused(self, x, kernel, n_out: int, plan: fusion.DepthwisePlan):
        """Emit the fused kernel between layout transforms (cancelled by the NCHWc pass against its neighbours')
        and absorb the depthwise conv and its activation (they return the fused result)."""
        y = self._call_nchwc(x, kernel, n_out)
        self._absorbed[plan.node] = plan.output
        for name in plan.activation_nodes:
            self._absorbed[name] = plan.output
        return y


def _conv_spec(attrs: dict, x_shape, n_out: int, node_name: str) -> ConvSpec:
    """The geometry of a sparse ``*Conv`` node from its Conv attributes."""
    def ints(key, default):
        value = attrs.get(key, default)
        return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))

    try:
        return ConvSpec(tuple(x_shape), n_out, ints("kernel_shape", ()), ints("strides", (1, 1)),
                        ints("pads", (0, 0, 0, 0)), ints("dilations", (1, 1)), int(attrs.get("group", 1)))
    except (TypeError, ValueError) as exc:
        raise UnsupportedOpError(f"sparse conv node '{node_name}' has invalid Conv attributes: {exc}") from exc


def with_unique_node_names(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` itself when every node has a name of its own, else a copy in which unnamed and repeated names are
    made unique (the importer absorbs fused nodes by name: an empty or shared name must never stand for two
    nodes). First occurrences keep their names."""
    names = [n.name for n in proto.graph.node]
    if all(names) and len(set(names)) == len(names):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    used = set(names)
    seen: set[str] = set()
    for i, node in enumerate(copy.graph.node):
        if node.name and node.name not in seen:
            seen.add(node.name)
            continue
        base = f"{node.name or node.op_type}_{i}"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        node.name = name
        used.add(name)
        seen.add(name)
    return copy


def from_onnx(proto: onnx.ModelProto, *, kernel_target, rules=None, builders=None, fuse: bool = True
              ) -> tuple[object, list[KernelRecord]]:
    """Relax ``IRModule`` of ``proto`` (weights as constants) and the sparse kernels it calls.

    ``rules``: the target's ordered kernel rules (default :data:`~.kernels.rules.CPU_RULES`; CUDA:
    :data:`~.cuda.rules.CUDA_RULES`). ``builders`` (deprecated): a module of kernel builders, turned into rules
    with :func:`~.kernels.rules.rules_from_builders`.
    """
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 18)
    proto = with_unique_node_names(proto)
    importer = SparseforgeImporter(None, "float32", kernel_target=kernel_target, rules=rules, builders=builders,
                                   fuse=fuse, keep_params_in_input=False, sanitize=True)
    mod = importer.from_onnx(proto.graph, opset)
    return mod, importer.records
