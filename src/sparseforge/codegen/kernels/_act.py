"""Fused epilogue activations as vectorizable TVMScript expressions (float32).

No libm calls (LLVM would scalarize ``expf``/``erff`` into per-lane calls): exp uses Cephes-style range reduction
plus a degree-5 polynomial and an exponent bit trick; erf and tanh use the rational approximations of Eigen (the
ones behind ``topi.fast_erf``/``fast_tanh``). Measured maximum errors against float64 (see tests): exp-based
sigmoid/silu and tanh below 3e-7 absolute, gelu below 3e-7 * max(1, |x|).
"""

from __future__ import annotations

from ._common import Src, f32

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


def emit_exp(src: Src, x: str) -> str:
    """exp(x) for float32 ``x``, clamped to [-88, 88] (finite for every input, no NaN)."""
    xc, n, r, p = src.var("ex"), src.var("en"), src.var("er"), src.var("ep")
    src.let(xc, f"T.max(T.min({x}, {f32(88.0)}), {f32(-88.0)})")  # exp(88) < FLT_MAX: no inf
    src.let(n, f"T.floor({xc} * {f32(1.44269504088896341)} + {f32(0.5)})")
    src.let(r, f"{xc} - {n} * {f32(0.693359375)} + {n} * {f32(2.12194440e-4)}")
    src.let(p, f"{_horner(r, _EXP_P)} * {r} * {r} + {r} + {f32(1.0)}")
    return f'({p} * T.reinterpret("float32", (T.Cast("int32", {n}) + 127) << 23))'


def emit_activation(src: Src, x: str, activation: str) -> str:
    """Emit let-bindings for ``activation(x)`` at the current position; return the result expression."""
    if activation == "none":
        return x
    if activation == "relu":
        return f"T.max({x}, {f32(0)})"
    if activation == "relu6":
        return f"T.min(T.max({x}, {f32(0)}), {f32(6)})"
    if activation in ("sigmoid", "silu"):
        e = emit_exp(src, f"({f32(0)} - {x})")
        sig = f"({f32(1)} / ({f32(1)} + {e}))"
        if activation == "sigmoid":
            return sig
        # x * sigmoid(x) underflows to 0 below -88 (the clamped exp would leave x * 6e-39, not 0, for huge |x|)
        return f"T.Select({x} < {f32(-88.0)}, {f32(0)}, {x} * {sig})"
    if activation == "tanh":
        t, t2 = src.var("th"), src.var("th")
        src.let(t, f"T.max(T.min({x}, {f32(9.0)}), {f32(-9.0)})")
        src.let(t2, f"{t} * {t}")
        return f"({t} * {_horner(t2, _TANH_ALPHA)} / {_horner(t2, _TANH_BETA)})"
    if activation == "gelu":  # 0.5 x (1 + erf(x / sqrt 2)), erf form (torch default)
        u, u2 = src.var("gu"), src.var("gu")
        src.let(u, f"T.max(T.min({x} * {f32(0.7071067811865476)}, {f32(4.0)}), {f32(-4.0)})")
        src.let(u2, f"{u} * {u}")
        erf = f"({u} * {_horner(u2, _ERF_ALPHA)} / {_horner(u2, _ERF_BETA)})"
        return f"({f32(0.5)} * {x} * ({f32(1)} + {erf}))"
    raise ValueError(f"unknown activation {activation!r}")
