"""float16 / bfloat16 ops computed in float32, rounded once at the end: what ONNX Runtime's CPU kernels do.

ONNX Runtime runs most fp16 ops on the CPU through float32 kernels (MLAS accumulates fp16 MatMul in float32), and
the ONNX reference computes each NumPy fp16 op in float32 and rounds its result. TVM's converters instead
accumulate in fp16 (MatMul, Softmax, reductions: several units in the last place off on the node tests) or mix
float32 constants into fp16 expressions (Elu, Selu, ... raise). (fp16 ``Softmax`` has a converter of its own
that rounds after each step, as the reference does.) For the ops in :data:`WIDENED_OPS` every fp16 /
bf16 tensor input is cast to float32, the op is converted as usual, and every float32 output is cast back to the
input's type. These ops' outputs all have the input's float type, so the result types are unchanged; the values
are the float32 result rounded once.
"""

from __future__ import annotations

from . import _tvm

relax = _tvm.relax

LOW_FLOATS = ("float16", "bfloat16")

#: Ops whose float outputs have the type of their float inputs and whose value is a rounding of a float32 result.
WIDENED_OPS = frozenset({
    "MatMul", "Gemm", "Einsum", "Conv", "ConvTranspose", "Attention",
    "LogSoftmax",
    "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "LeakyRelu", "ThresholdedRelu", "PRelu", "Softplus",
    "Softsign", "Gelu", "Mish", "Erf", "Swish",
    "ReduceMean", "ReduceSum", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    "ReduceProd", "AveragePool", "GlobalAveragePool", "LpPool", "GlobalLpPool",
    "InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization", "LpNormalization",
    "RMSNormalization",
})


def _tensor_dtype(expr) -> str | None:
    ty = getattr(expr, "ty", None)
    dtype = getattr(ty, "dtype", None)
    return None if dtype is None or not hasattr(ty, "shape") else str(dtype)


def low_float_dtype(op_name: str, inputs) -> str | None:
    """The fp16/bf16 type ``op_name`` computes in, when it is to be widened to float32; else None."""
    if op_name not in WIDENED_OPS:
        return None
    found = {_tensor_dtype(x) for x in inputs if isinstance(x, relax.Expr)} & set(LOW_FLOATS)
    return found.pop() if len(found) == 1 else None


def widen(bb, inputs) -> list:
    """``inputs`` with every fp16/bf16 tensor cast to float32 (others, and omitted inputs, as given)."""
    items = [bb.emit(relax.op.astype(x, "float32")) if isinstance(x, relax.Expr) and _tensor_dtype(x) in LOW_FLOATS
             else x for x in inputs]
    return type(inputs)(items) if isinstance(inputs, list) else items  # keep TVM's None-past-the-end list


def narrow(bb, result, dtype: str):
    """``result`` (a tensor or a tuple of tensors) with every float32 tensor cast to ``dtype``."""
    result = bb.normalize(result) if isinstance(result, relax.Expr) else result
    if isinstance(result, relax.Expr) and _tensor_dtype(result) is not None:
        return bb.emit(relax.op.astype(result, dtype)) if _tensor_dtype(result) == "float32" else result
    fields = result.fields if isinstance(result, relax.Tuple) else None
    if fields is None and isinstance(result, relax.Expr) and hasattr(result.ty, "fields"):
        fields = [bb.emit(relax.TupleGetItem(result, i)) for i in range(len(result.ty.fields))]
    if fields is None:
        return result
    return relax.Tuple([narrow(bb, f, dtype) for f in fields])
