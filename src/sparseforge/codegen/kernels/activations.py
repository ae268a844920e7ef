"""The one table of fused epilogue activations: NumPy reference, CPU and CUDA TVMScript emitters, ONNX op.

``act(x)`` for float32 ``x``. Emitters get a source builder (``src.let`` / ``src.var``, see ``_common.Src``) and
the name of a bound float32 value, may emit let-bindings, and return the result expression.

* ``cpu``: vectorizable, no libm calls (LLVM would scalarize ``expf``/``erff`` into per-lane calls): exp uses
  Cephes-style range reduction plus a degree-5 polynomial and an exponent bit trick; erf and tanh use the
  rational approximations of Eigen (the ones behind ``topi.fast_erf``/``fast_tanh``). Measured maximum errors
  against float64 (see tests): sigmoid/silu and tanh below 3e-7 absolute, gelu below 3e-7 * max(1, |x|).
* ``cuda``: CUDA's libm (``expf``/``erff``/``tanhf``, IEEE float32 without fast math); the piecewise-linear ones
  share the CPU expressions.
* ``numpy``: float64 reference. gelu is the erf form (torch default) everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import erf, expit

from .._tvm import relax


def f32(x: float) -> str:
    """A float32 TVMScript literal."""
    return f"T.float32({float(np.float32(x))!r})"


_ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
              -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
             -1.42647390514189e-02)
_TANH_ALPHA = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
               1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_TANH_BETA = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


def _horner(x: str, coeffs) -> str:
    expr = f32(coeffs[0])
    for c in coeffs[1:]:
        expr = f"({expr} * {x} + {f32(c)})"
    return expr


def emit_exp(src, x: str) -> str:
    """exp(x) for float32 ``x``, clamped to [-88, 88] (finite for every input, no NaN); no libm."""
    xc, n, r, p = src.var("ex"), src.var("en"), src.var("er"), src.var("ep")
    src.let(xc, f"T.max(T.min({x}, {f32(88.0)}), {f32(-88.0)})")  # exp(88) < FLT_MAX: no inf
    src.let(n, f"T.floor({xc} * {f32(1.44269504088896341)} + {f32(0.5)})")
    src.let(r, f"{xc} - {n} * {f32(0.693359375)} + {n} * {f32(2.12194440e-4)}")
    src.let(p, f"{_horner(r, _EXP_P)} * {r} * {r} + {r} + {f32(1.0)}")
    return f'({p} * T.reinterpret("float32", (T.Cast("int32", {n}) + 127) << 23))'


def _cpu_sigmoid(src, x: str) -> str:
    return f"({f32(1)} / ({f32(1)} + {emit_exp(src, f'({f32(0)} - {x})')}))"


def _cpu_silu(src, x: str) -> str:
    # x * sigmoid(x) underflows to 0 below -88 (the clamped exp would leave x * 6e-39, not 0, for huge |x|)
    return f"T.Select({x} < {f32(-88.0)}, {f32(0)}, {x} * {_cpu_sigmoid(src, x)})"


def _cpu_tanh(src, x: str) -> str:
    t, t2 = src.var("th"), src.var("th")
    src.let(t, f"T.max(T.min({x}, {f32(9.0)}), {f32(-9.0)})")
    src.let(t2, f"{t} * {t}")
    return f"({t} * {_horner(t2, _TANH_ALPHA)} / {_horner(t2, _TANH_BETA)})"


def _cpu_gelu(src, x: str) -> str:  # 0.5 x (1 + erf(x / sqrt 2))
    u, u2 = src.var("gu"), src.var("gu")
    src.let(u, f"T.max(T.min({x} * {f32(0.7071067811865476)}, {f32(4.0)}), {f32(-4.0)})")
    src.let(u2, f"{u} * {u}")
    erf_ = f"({u} * {_horner(u2, _ERF_ALPHA)} / {_horner(u2, _ERF_BETA)})"
    return f"({f32(0.5)} * {x} * ({f32(1)} + {erf_}))"


def _relu(src, x: str) -> str:
    return f"T.max({x}, {f32(0)})"


def _relu6(src, x: str) -> str:
    return f"T.min(T.max({x}, {f32(0)}), {f32(6)})"


def _hardswish(src, x: str) -> str:  # x * (relu6(x + 3) / 6): finite for every finite x
    return f"({x} * (T.min(T.max({x} + {f32(3)}, {f32(0)}), {f32(6)}) * {f32(1 / 6)}))"


def _relax_hardswish(op, y):
    three, sixth = relax.const(3.0, "float32"), relax.const(1 / 6, "float32")
    return op.multiply(y, op.multiply(op.clip(op.add(y, three), 0.0, 6.0), sixth))


@dataclass(frozen=True)
class Activation:
    """One fused activation: ``numpy(y)`` float64 reference; ``cpu``/``cuda``: ``(src, x) -> expression``;
    ``relax(op, y)``: the Relax expression (``op`` is ``tvm.relax.op``; dense fallback); ``onnx_op``: the single
    standard ONNX op it replaces when fused (None: matched by a pattern)."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    cpu: Callable
    cuda: Callable
    relax: Callable
    onnx_op: str | None = None


TABLE: dict[str, Activation] = {a.name: a for a in (
    Activation("none", lambda y: y, lambda src, x: x, lambda src, x: x, lambda op, y: y),
    Activation("relu", lambda y: np.maximum(y, 0), _relu, _relu, lambda op, y: op.nn.relu(y), "Relu"),
    Activation("relu6", lambda y: np.clip(y, 0, 6), _relu6, _relu6, lambda op, y: op.clip(y, 0.0, 6.0)),
    Activation("gelu", lambda y: 0.5 * y * (1 + erf(y / np.sqrt(2.0))), _cpu_gelu,
               lambda src, x: f"({f32(0.5)} * {x} * ({f32(1)} + T.erf({x} * {f32(0.7071067811865476)})))",
               lambda op, y: op.nn.gelu(y), "Gelu"),
    # exp overflow gives 1 / inf = 0: the correct limit
    Activation("sigmoid", expit, _cpu_sigmoid, lambda src, x: f"({f32(1)} / ({f32(1)} + T.exp({f32(0)} - {x})))",
               lambda op, y: op.sigmoid(y), "Sigmoid"),
    Activation("silu", lambda y: y * expit(y), _cpu_silu,
               lambda src, x: f"({x} / ({f32(1)} + T.exp({f32(0)} - {x})))", lambda op, y: op.nn.silu(y)),
    Activation("hardswish", lambda y: y * np.clip(y + 3, 0, 6) / 6, _hardswish, _hardswish, _relax_hardswish,
               "HardSwish"),
    Activation("tanh", np.tanh, _cpu_tanh, lambda src, x: f"T.tanh({x})", lambda op, y: op.tanh(y), "Tanh"),
)}

#: Activation names, in table order.
ACTIVATIONS: tuple[str, ...] = tuple(TABLE)


#: Standard ONNX op -> activation fused in its place (single-op matches; Clip and x*sigmoid(x) are patterns).
BY_ONNX_OP: dict[str, str] = {a.onnx_op: a.name for a in TABLE.values() if a.onnx_op}


def get(activation: str) -> Activation:
    """The table entry (ValueError naming the known activations if unknown)."""
    try:
        return TABLE[activation]
    except KeyError:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}") from None


def apply_activation_np(y: np.ndarray, activation: str) -> np.ndarray:
    """Float64 reference of the fused activations."""
    return get(activation).numpy(y)


def emit_activation(src, x: str, activation: str) -> str:
    """CPU: emit let-bindings for ``activation(x)`` at the current position; return the result expression."""
    return get(activation).cpu(src, x)


def emit_activation_cuda(src, x: str, activation: str) -> str:
    """CUDA: the expression for ``activation(x)`` (``x`` a bound float32 name)."""
    return get(activation).cuda(src, x)
