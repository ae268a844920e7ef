"""TVMScript text emission for the CUDA kernels: an indented source builder, parsing, fused activations.

Kernels are generated as TVMScript *text* with every shape written as a literal (no closure-trap, readable with
``kernel.func.script()``), then parsed with ``tvm.script.from_source``. Activations use CUDA's libm
(``expf``/``erff``/``tanhf``, IEEE float32 unless built with fast math; :mod:`.build` compiles without it).
"""

from __future__ import annotations

from ..kernels._act import emit_activation as emit_piecewise_linear
from ..kernels._common import ACTIVATIONS, Src, f32, func_header, parse  # noqa: F401 - shared with the CPU kernels

WARP = 32
FULL_MASK = "T.uint32(4294967295)"


def guard(cond: str | None) -> str | None:
    return f"if {cond}:" if cond else None


def emit_activation(src: Src, x: str, activation: str) -> str:
    """Return an expression for ``activation(x)`` (x: a bound float32 name); libm for the transcendental ones."""
    if activation in ("none", "relu", "relu6"):  # no libm involved: the CPU kernels' expressions
        return emit_piecewise_linear(src, x, activation)
    if activation == "sigmoid":  # exp overflow gives 1 / inf = 0: correct limit
        return f"({f32(1)} / ({f32(1)} + T.exp({f32(0)} - {x})))"
    if activation == "silu":
        return f"({x} / ({f32(1)} + T.exp({f32(0)} - {x})))"
    if activation == "tanh":
        return f"T.tanh({x})"
    if activation == "gelu":  # erf form (torch default)
        return f"({f32(0.5)} * {x} * ({f32(1)} + T.erf({x} * {f32(0.7071067811865476)})))"
    raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")


def epilogue(src: Src, value: str, bias_index: str | None, activation: str) -> str:
    """Bind ``value (+ bias[bias_index])`` and return the activated expression."""
    y = src.var("y")
    src.let(y, value + (f" + bias[{bias_index}]" if bias_index is not None else ""))
    return emit_activation(src, y, activation)
