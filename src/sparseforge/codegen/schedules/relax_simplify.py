"""Relax pass: graph clean-ups that the ONNX importer leaves and that would block fusion.

* ``take(x, c, axis)`` with a constant scalar ``c`` (how ``torch.unbind``/``Gather`` of the fused
  QKV projection arrives after constant folding) becomes ``squeeze(strided_slice(x))``: the
  legalized ``take`` reads its index from a buffer, which makes it an opaque, unfusable kernel.
"""

from __future__ import annotations

from .. import _tvm

relax = _tvm.relax
tvm = _tvm.tvm

_TAKE = tvm.ir.Op.get("relax.take")


def _scalar_int_const(expr) -> int | None:
    if not isinstance(expr, tvm.ir.expr.Constant):
        return None
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.ndim != 0 or not str(ty.dtype).startswith("int"):
        return None
    return int(expr.value.numpy())


@relax.expr_functor.mutator
class _Simplifier(relax.PyExprMutator):
    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.same_as(_TAKE):
            return self._take(call)
        return call

    def _take(self, call):
        x, idx = call.args
        index = _scalar_int_const(idx)
        ty = x.ty
        if index is None or not isinstance(ty, relax.TensorType) or ty.shape is None:
            return call
        axis = int(call.attrs.axis) if call.attrs.axis is not None else None
        if axis is None:
            return call
        axis %= ty.ndim
        dim = ty.shape.values[axis]
        if not isinstance(dim, _tvm.tirx.IntImm):
            return call
        index %= int(dim)
        sliced = self.builder_.emit(relax.op.strided_slice(x, [axis], [index], [index + 1]))
        return relax.op.squeeze(sliced, [axis])


@tvm.transform.module_pass(opt_level=0, name="SimplifyGraph")
class SimplifyGraph:
    """Rewrite constant-index ``take`` into slices (see module docstring)."""

    def transform_module(self, mod, _ctx):
        rewriter = _Simplifier(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()
