"""Relax pass: run convolutional networks in the NCHWc layout (:mod:`.kernels_conv`).

Every float32 ``nn.conv2d`` (NCHW/OIHW, dilation 1, groups 1 or depthwise) becomes an NCHWc
kernel whose weight is ``layout_transform``-ed into the kernel's packed layout (folded at compile
time by ``FoldConstant``). The blocked layout then propagates through the ops between
convolutions, so activations are re-laid-out only where the network leaves the conv region:

* elementwise ``add/subtract/multiply/divide/maximum/minimum/clip`` whose other operands are
  blocked tensors of the same shape or per-channel over the image (a squeeze-and-excitation scale
  ``[1, C, 1, 1]``), per-channel tensors (``[1, C, 1, 1]``/``[C, 1, 1]``) or scalars; ONNX ``Clip``
  arrives as ``call_tir`` of TOPI ``maximum``/``minimum`` with a scalar, which is recognised too;
* elementwise unary ops (``relu``, ``sigmoid``, ``gelu``...), max/avg pooling (TOPI's pooling
  takes the ``NCHW{c}c`` layout string), ``mean`` over H and W (global average pooling).

For each converted binding an NCHW copy is also emitted (``layout_transform`` back + channel
slice) under the original variable; consumers that do not understand the blocked layout use it,
and ``DeadCodeElimination`` drops the copies nobody uses.
"""

from __future__ import annotations

from .. import _tvm
from . import kernels_winograd as winograd
from ._contract import is_hand_scheduled
from .kernels_conv import conv2d_nchwc, conv_tile, depthwise_nchwc, depthwise_tile
from .kernels_dense import dense_packed, dense_tile_m, dense_tile_n

relax = _tvm.relax
tvm = _tvm.tvm
tirx = _tvm.tirx

_BINARY = {
    "relax.add": relax.op.add,
    "relax.subtract": relax.op.subtract,
    "relax.multiply": relax.op.multiply,
    "relax.divide": relax.op.divide,
    "relax.maximum": relax.op.maximum,
    "relax.minimum": relax.op.minimum,
}
#: Elementwise unary ops re-emitted unchanged on blocked tensors (padding lanes may turn into
#: inf/NaN, e.g. ``log``, which is harmless: no consumer mixes padding lanes into real channels).
_UNARY = frozenset({
    "relax.nn.relu", "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.nn.silu", "relax.nn.leakyrelu",
    "relax.sigmoid", "relax.tanh", "relax.exp", "relax.erf", "relax.sqrt", "relax.rsqrt", "relax.log",
    "relax.negative", "relax.abs", "relax.square",
})
_POOL = frozenset({"relax.nn.max_pool2d", "relax.nn.avg_pool2d"})
_INDEX_DTYPE = "int64"
#: relax OpPatternKind values.
_OUT_ELEMWISE_FUSABLE = 4
_OPAQUE = 8


def _shape(expr) -> list[int] | None:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return [int(s) for s in ty.shape.values]
    except (TypeError, AttributeError):
        return None


def _dtype(expr) -> str | None:
    ty = expr.ty
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def _imap(fn, ndim: int):
    return tirx.IndexMap.from_func(fn, ndim=ndim, index_dtype=_INDEX_DTYPE)


def scalar_minmax_kind(func) -> tuple[str, int] | None:
    """``("max"|"min", scalar_arg_index)`` if ``func`` is ``out = max/min(tensor, scalar)`` elementwise."""
    if not isinstance(func, tirx.PrimFunc) or len(func.params) != 3:
        return None
    try:
        sch = _tvm.s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except (RuntimeError, ValueError):
        return None
    if len(blocks) != 1:
        return None
    store = sch.get(blocks[0]).body
    value = getattr(store, "value", None)
    kind = "max" if isinstance(value, tirx.Max) else "min" if isinstance(value, tirx.Min) else None
    if kind is None or not all(isinstance(x, tvm.ir.expr.TensorLoad) for x in (value.a, value.b)):
        return None
    ranks = [len(p.shape) for p in func.params[:2]]
    if sorted(ranks)[0] != 0 or sorted(ranks)[1] == 0:
        return None
    return kind, ranks.index(0)


@relax.expr_functor.mutator
class _NCHWcConverter(relax.PyExprMutator):
    def __init__(self, mod, lanes: int, registers: int):
        super().__init__(mod)
        self.mod_ = mod
        self.lanes = lanes
        self.registers = registers
        self.blocked: dict = {}  # NCHW relax Var -> (blocked Var, channels)
        self.converted = 0
        self._bindings: dict = {}  # relax Var -> bound value (to look through the importer's unblock + slice)

    # ---- layout helpers -------------------------------------------------------------------
    def _cur(self, expr):
        """``expr`` with earlier rewrites applied (the current name of a variable)."""
        if isinstance(expr, relax.Var):
            remapped = self.get_var_remap(expr)
            if remapped is None:
                # the lookup left an empty entry in the C++ remap table (operator[]): make it the identity, or
                # the mutator later meets a null node for this variable
                self.set_var_remap(expr, expr)
                return expr
            return remapped
        return expr

    def _block(self, x):
        c = self.lanes
        if len(_shape(x)) == 3:  # [C, 1, 1] per-channel constant
            x = self.builder_.emit(relax.op.expand_dims(x, [0]))
        return self.builder_.emit(
            relax.op.layout_transform(x, _imap(lambda n, k, h, w: (n, k // c, h, w, k % c), 4), pad_value=0.0)
        )

    def _unblock(self, xb, channels: int):
        c = self.lanes
        y = relax.op.layout_transform(xb, _imap(lambda n, kb, h, w, k: (n, kb * c + k, h, w), 5))
        if _shape(xb)[1] * c != channels:
            y = relax.op.strided_slice(self.builder_.emit(y), [1], [0], [channels])
        return y

    def _blocked_arg(self, arg, out_shape):
        """Blocked form of an operand of a converted elementwise op, or None if incompatible."""
        if isinstance(arg, relax.Var) and arg in self.blocked:
            xb, _ = self.blocked[arg]
            shape = _shape(arg)
            # the same shape, or per-channel over the image (a squeeze-and-excitation scale [N|1, C, 1, 1]): the
            # blocked forms broadcast alike, lane by lane
            same_channels = shape is not None and len(shape) == 4 and shape[1] == out_shape[1]
            broadcasts = same_channels and all(d in (1, o) for d, o in zip(shape, out_shape))
            return xb if broadcasts else None
        shape = _shape(arg)
        if shape is None or _dtype(arg) != "float32":
            return None
        if all(d == 1 for d in shape):
            return self._cur(arg)  # scalar-like: broadcasts against any layout
        channels = out_shape[1]
        if shape in ([1, channels, 1, 1], [channels, 1, 1]):
            return self._block(self._cur(arg))
        return None

    # ---- blocked kernels placed by the importer --------------------------------------------------
    def _is_layout(self, call, blocked_to_nchw: bool) -> bool:
        """Whether ``call`` is a layout_transform between NCHW and this pass's NCHW{lanes}c."""
        if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
                and call.op.name == "relax.layout_transform"):
            return False
        c = self.lanes
        expected = (_imap(lambda n, kb, h, w, k: (n, kb * c + k, h, w), 5) if blocked_to_nchw
                    else _imap(lambda n, k, h, w: (n, k // c, h, w, k % c), 4))
        return _tvm.structural_equal(call.attrs.index_map, expected, map_free_vars=True)

    def _pass_through_importer_layouts(self, binding) -> bool:
        """Cancel the importer's NCHW<->NCHWc transforms around blocked kernels against this pass's ones.

        ``xb = layout_transform(x)`` with ``x`` already blocked here becomes ``xb := blocked(x)``; the NCHW result
        of a blocked kernel (``layout_transform`` back, maybe a channel slice) is registered as blocked so the next
        converted op consumes the blocked tensor directly.
        """
        value = binding.value
        if self._is_layout(value, blocked_to_nchw=False):
            x = value.args[0]
            if isinstance(x, relax.Var) and x in self.blocked:
                self.set_var_remap(binding.var, self.blocked[x][0])
                return True
            return False
        source = value
        channels = None
        if (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                and value.op.name == "relax.strided_slice" and isinstance(value.args[0], relax.Var)):
            producer = self._bindings.get(value.args[0])
            if producer is not None and self._is_layout(producer, blocked_to_nchw=True):
                source, channels = producer, _shape(value)[1]
        if self._is_layout(source, blocked_to_nchw=True):
            yb = self._cur(source.args[0])
            shape = _shape(binding.var)
            if shape is not None and len(shape) == 4:
                self.blocked[binding.var] = (yb, channels or shape[1])
        return False

    # ---- conversions --------------------------------------------------------------------------
    def visit_var_binding_(self, binding):
        value = binding.value
        self._bindings[binding.var] = value
        if self._pass_through_importer_layouts(binding):
            return None
        result = self._convert(value) if isinstance(value, relax.Call) else None
        if result is None:
            return super().visit_var_binding_(binding)
        yb, channels = result
        nchw = self._unblock(yb, channels)
        emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
        new_var = emit(nchw, binding.var.name)
        self.set_var_remap(binding.var, new_var)
        self.blocked[binding.var] = (yb, channels)
        self.converted += 1
        return None

    def _convert(self, call):
        out_shape = _shape(call)
        if out_shape is None or len(out_shape) != 4 or _dtype(call) != "float32":
            return None
        if isinstance(call.op, tvm.ir.Op):
            name = call.op.name
            if name == "relax.nn.conv2d":
                return self._conv2d(call, out_shape)
            if name in _BINARY:
                return self._elementwise(_BINARY[name], call.args, out_shape)
            if name == "relax.clip":
                return self._clip(call, out_shape)
            if name in _UNARY:
                return self._unary(call, out_shape)
            if name in _POOL:
                return self._pool(call, out_shape)
            if name == "relax.mean":
                return self._mean(call, out_shape)
            if name == "relax.call_tir":
                return self._call_tir_minmax(call, out_shape)
        return None

    def _conv2d(self, call, out_shape):
        attrs = call.attrs
        x, w = call.args
        x_shape, w_shape = _shape(x), _shape(w)
        if x_shape is None or w_shape is None or _dtype(x) != "float32" or _dtype(w) != "float32":
            return None
        if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NCHW", "OIHW", "NCHW"):
            return None
        if [int(d) for d in attrs.dilation] != [1, 1] or str(attrs.out_dtype or "") not in ("", "float32"):
            return None
        c = self.lanes
        groups = int(attrs.groups)
        ic, oc = x_shape[1], out_shape[1]
        strides = [int(s) for s in attrs.strides]
        pads = [int(p) for p in attrs.padding]
        if len(pads) == 2:
            pads = pads * 2
        out_hw = out_shape[2:]
        ocb = -(-oc // c)
        if groups == 1:
            xb = self.blocked.get(x, (None,))[0] if isinstance(x, relax.Var) else None
            blocked_in = xb is not None or ic % c == 0
            if blocked_in and xb is None:
                xb = self._block(self._cur(x))
            xin = xb if blocked_in else self._cur(x)
            weight = self._constant(w) if winograd.eligible(x_shape, w_shape, strides, pads, groups, c) else None
            if weight is not None:
                return self._winograd(xin, weight, out_hw), oc
            wp = self.builder_.emit(relax.op.layout_transform(
                self._cur(w), _imap(lambda o, i, h, ww: (o // c, i, h, ww, o % c), 4), pad_value=0.0))
            mr, ob = conv_tile(ocb, out_hw[0] * out_hw[1], c, self.registers, blocked_in)
            yb = self.builder_.emit(self.builder_.call_te(
                conv2d_nchwc, xin, wp, strides=strides, pads=pads, out_hw=out_hw, lanes=c, tile_m=mr,
                tile_blocks=ob, input_blocked=blocked_in, primfunc_name_hint="sf_conv2d_nchwc"))
            return yb, oc
        if groups == ic == oc and w_shape[1] == 1:
            xb = self.blocked.get(x, (None,))[0] if isinstance(x, relax.Var) else None
            if xb is None:
                xb = self._block(self._cur(x))
            w3 = self.builder_.emit(relax.op.reshape(self._cur(w), [w_shape[0], w_shape[2], w_shape[3]]))
            wp = self.builder_.emit(relax.op.layout_transform(
                w3, _imap(lambda o, h, ww: (o // c, h, ww, o % c), 3), pad_value=0.0))
            mr = depthwise_tile(out_hw[1], c, self.registers)
            yb = self.builder_.emit(self.builder_.call_te(
                depthwise_nchwc, xb, wp, strides=strides, pads=pads, out_hw=out_hw, lanes=c, tile_m=mr,
                primfunc_name_hint="sf_depthwise_nchwc"))
            return yb, oc
        return None

    def _constant(self, w):
        """The NumPy value of a constant weight, or None."""
        w = self._cur(w)
        return w.value.numpy() if isinstance(w, tvm.ir.expr.Constant) else None

    def _winograd(self, xb, w, out_hw):
        """A 3x3 stride-1 convolution as Winograd F(2x2, 3x3) (:mod:`.kernels_winograd`): input transform, 16
        packed GEMMs, output transform (which the epilogue fuses into)."""
        c = self.lanes
        oc = w.shape[0]
        tiles = -(-out_hw[0] // 2) * -(-out_hw[1] // 2)
        nr = dense_tile_n(oc, c, self.registers)
        mr = dense_tile_m(tiles, nr, c, self.registers)
        # Fusion patterns: nothing fuses into the input transform (an output transform before it would be recomputed
        # for every read), and only elementwise epilogues fuse into the output transform.
        v = self._call_te_as(_OPAQUE, winograd.winograd_input, xb, lanes=c, primfunc_name_hint="sf_winograd_input")
        up = relax.const(winograd.winograd_weight(w, nr))
        m = self.builder_.emit(self.builder_.call_te(dense_packed, v, up, n=oc, tile_m=mr, lanes=c,
                                                     primfunc_name_hint="sf_winograd_gemm"))
        return self._call_te_as(_OUT_ELEMWISE_FUSABLE, winograd.winograd_output, m, oc=oc, out_hw=out_hw, lanes=c,
                                primfunc_name_hint="sf_winograd_output")

    def _call_te_as(self, pattern: int, fn, *args, **kwargs):
        """``call_te`` whose PrimFunc carries the fusion ``pattern`` (AnnotateTIROpPattern keeps it)."""
        call = self.builder_.call_te(fn, *args, **kwargs)
        gv = call.args[0]
        self.builder_.update_func(gv, self.builder_.get()[gv].with_attr("op_pattern", pattern))
        return self.builder_.emit(call)

    def _elementwise(self, op, args, out_shape):
        if not any(isinstance(a, relax.Var) and a in self.blocked for a in args):
            return None
        blocked = [self._blocked_arg(a, out_shape) for a in args]
        if any(b is None for b in blocked):
            return None
        return self.builder_.emit(op(*blocked)), out_shape[1]

    def _clip(self, call, out_shape):
        x = call.args[0]
        if not (isinstance(x, relax.Var) and x in self.blocked and _shape(x) == out_shape):
            return None
        xb = self.blocked[x][0]
        return self.builder_.emit(relax.op.clip(xb, call.args[1], call.args[2])), out_shape[1]

    def _unary(self, call, out_shape):
        x = call.args[0]
        if len(call.args) != 1 or not (isinstance(x, relax.Var) and x in self.blocked and _shape(x) == out_shape):
            return None
        return self.builder_.emit(relax.Call(call.op, [self.blocked[x][0]], call.attrs)), out_shape[1]

    def _pool(self, call, out_shape):
        x = call.args[0]
        a = call.attrs
        if not (isinstance(x, relax.Var) and x in self.blocked) or (a.layout, a.out_layout) != ("NCHW", "NCHW"):
            return None
        blocked = f"NCHW{self.lanes}c"
        pool = relax.op.nn.max_pool2d if call.op.name == "relax.nn.max_pool2d" else relax.op.nn.avg_pool2d
        kwargs = {"count_include_pad": bool(a.count_include_pad)} if call.op.name == "relax.nn.avg_pool2d" else {}
        y = pool(self.blocked[x][0], pool_size=[int(v) for v in a.pool_size], strides=[int(v) for v in a.strides],
                 padding=[int(v) for v in a.padding], dilation=[int(v) for v in a.dilation],
                 ceil_mode=bool(a.ceil_mode), layout=blocked, out_layout=blocked, **kwargs)
        return self.builder_.emit(y), out_shape[1]

    def _mean(self, call, out_shape):
        x = call.args[0]
        if not (isinstance(x, relax.Var) and x in self.blocked):
            return None
        axes = sorted(int(a) % 4 for a in call.attrs.axis) if call.attrs.axis is not None else None
        if axes != [2, 3] or not bool(call.attrs.keepdims):
            return None
        xb = self.blocked[x][0]
        return self.builder_.emit(relax.op.mean(xb, axis=[2, 3], keepdims=True)), out_shape[1]

    def _call_tir_minmax(self, call, out_shape):
        gv = call.args[0]
        func = self.mod_[gv] if isinstance(gv, relax.GlobalVar) else None
        if func is None or is_hand_scheduled(func):
            return None  # hand-written kernels are never rewritten
        kind = scalar_minmax_kind(func)
        if kind is None:
            return None
        op, scalar_index = kind
        operands = list(call.args[1])
        tensor = operands[1 - scalar_index]
        if not (isinstance(tensor, relax.Var) and tensor in self.blocked and _shape(tensor) == out_shape):
            return None
        fn = relax.op.maximum if op == "max" else relax.op.minimum
        return self.builder_.emit(fn(self.blocked[tensor][0], self._cur(operands[scalar_index]))), out_shape[1]


@tvm.transform.module_pass(opt_level=0, name="ConvertConvToNCHWc")
class ConvertConvToNCHWc:
    """Lower convolutions (and the elementwise ops between them) to ``lanes``-wide NCHWc kernels."""

    def __init__(self, lanes: int, registers: int):
        self.lanes = lanes
        self.registers = registers

    def transform_module(self, mod, _ctx):
        rewriter = _NCHWcConverter(mod, self.lanes, self.registers)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        out = rewriter.builder_.get()
        return relax.transform.DeadCodeElimination()(out) if rewriter.converted else out
