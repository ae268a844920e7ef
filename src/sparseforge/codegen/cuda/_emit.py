"""TVMScript text emission for the CUDA kernels: an indented source builder, parsing, fused activations.

Kernels are generated as TVMScript *text* with every shape written as a literal (no closure-trap, readable with
``kernel.func.script()``), then parsed with ``tvm.script.from_source``. Activations use CUDA's libm
(``expf``/``erff``/``tanhf``, IEEE float32 unless built with fast math; :mod:`.build` compiles without it).
"""

from __future__ import annotations

import contextlib

import numpy as np

ACTIVATIONS = ("none", "relu", "relu6", "gelu", "sigmoid", "silu", "tanh")
WARP = 32
FULL_MASK = "T.uint32(4294967295)"


class Src:
    """Indented TVMScript source builder."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0
        self._n = 0

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    @contextlib.contextmanager
    def block(self, header: str | None):
        """Open ``header:`` (an indented block); ``None`` opens nothing (optional guards)."""
        if header is None:
            yield
            return
        self(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def let(self, name: str, expr: str) -> str:
        """Immutable binding (``T.Bind``); a plain assignment would create a one-element local buffer."""
        self(f"{name} = T.Bind({expr})")
        return name

    def var(self, prefix: str = "t") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def f32(x: float) -> str:
    return f"T.float32({float(np.float32(x))!r})"


def func_header(src: Src, name: str, params: list[tuple[str, tuple[int, ...], str]]) -> None:
    """``@T.prim_func def name(...)`` with the attributes every kernel carries (dlight skips it)."""
    args = ", ".join(f"{p}: T.Buffer({tuple(int(s) for s in shape)!r}, {dt!r})" for p, shape, dt in params)
    src("@T.prim_func")
    src(f"def {name}({args}):")
    src.depth += 1
    src(f'T.func_attr({{"global_symbol": {name!r}, "tirx.noalias": True, "tirx.is_scheduled": True}})')


def parse(src: Src):
    from .._tvm import T, tvm

    try:
        return tvm.script.from_source(src.text(), extra_vars={"T": T})
    except Exception as exc:  # keep the generated text for debugging
        raise RuntimeError(f"TVMScript parse failed: {exc}\n--- generated source ---\n{src.text()[:20000]}") from exc


def guard(cond: str | None) -> str | None:
    return f"if {cond}:" if cond else None


def emit_activation(src: Src, x: str, activation: str) -> str:
    """Return an expression for ``activation(x)`` (x: a bound float32 name)."""
    if activation == "none":
        return x
    if activation == "relu":
        return f"T.max({x}, {f32(0)})"
    if activation == "relu6":
        return f"T.min(T.max({x}, {f32(0)}), {f32(6)})"
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
