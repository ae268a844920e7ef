"""Relax pass: lower ``relax.matmul`` to the packed dense kernel (:mod:`.kernels_dense`).

``matmul(A, B)`` (float32, static shapes, both ranks >= 2) becomes

    Bp = call_tir(sf_pack_panels, [B])      # Bp[..., n // NR, k, n % NR] = B[..., k, n], zero padded
    Y  = call_tir(sf_dense, [A, Bp])

When ``B`` is a constant (a weight), a later ``FoldConstant`` evaluates the packing once at compile
time, so the packed weight is what the executable stores. When ``B`` is an
activation (attention's ``Q @ K^T`` and ``P @ V``), FuseOps fuses the packing into the injective
kernel that produces ``B`` (a transpose), so it costs no extra pass over memory.
"""

from __future__ import annotations

from .. import _tvm
from .kernels_dense import dense_packed, dense_tile_m, dense_tile_n, pack_panels

relax = _tvm.relax
tvm = _tvm.tvm

_MATMUL = tvm.ir.Op.get("relax.matmul")


def _static_shape(expr) -> list[int] | None:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None or ty.dtype != "float32":
        return None
    try:
        return [int(s) for s in ty.shape.values]
    except (TypeError, AttributeError):
        return None


@relax.expr_functor.mutator
class _MatmulToPackedDense(relax.PyExprMutator):
    def __init__(self, mod, lanes: int, registers: int):
        super().__init__(mod)
        self.lanes = lanes
        self.registers = registers
        self.rewritten = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not isinstance(call.op, tvm.ir.Op) or not call.op.same_as(_MATMUL):
            return call
        out_dtype = str(call.attrs.out_dtype or "") if call.attrs is not None else ""
        a_shape, b_shape = _static_shape(call.args[0]), _static_shape(call.args[1])
        if a_shape is None or b_shape is None or len(a_shape) < 2 or len(b_shape) < 2:
            return call
        if out_dtype not in ("", "void", "float32") or 0 in a_shape + b_shape:
            return call
        a, b = call.args
        n = b_shape[-1]
        nr = dense_tile_n(n, self.lanes, self.registers)
        rows = a_shape[-2] if len(b_shape) > 2 else _prod(a_shape[:-1])
        mr = dense_tile_m(rows, nr, self.lanes, self.registers)
        bp = self.builder_.emit(self.builder_.call_te(pack_panels, b, nr=nr, primfunc_name_hint="sf_pack_panels"))
        self.rewritten += 1
        return self.builder_.call_te(
            dense_packed, a, bp, n=n, tile_m=mr, lanes=self.lanes, primfunc_name_hint="sf_dense"
        )


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


@tvm.transform.module_pass(opt_level=0, name="PackDenseWeights")
class PackDenseWeights:
    """Rewrite every eligible ``relax.matmul`` into the packed dense kernel for ``lanes``-wide SIMD.

    Run ``FoldConstant`` before (so transposed weights are constants) and after (to pack them).
    """

    def __init__(self, lanes: int, registers: int):
        self.lanes = lanes
        self.registers = registers

    def transform_module(self, mod, _ctx):
        rewriter = _MatmulToPackedDense(mod, self.lanes, self.registers)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()
