"""TVMScript text emission for the CUDA kernels: an indented source builder, parsing, fused activations.

Kernels are generated as TVMScript *text* with every shape written as a literal (no closure-trap, readable with
``kernel.func.script()``), then parsed with ``tvm.script.from_source``. Activations: the CUDA column of
:mod:`sparseforge.codegen.kernels.activations` (libm; :mod:`.build` compiles without fast math).
"""

from __future__ import annotations

from ..kernels._common import Src, f32, func_header, parse  # noqa: F401 - shared with the CPU kernels
from ..kernels.activations import emit_activation_cuda as emit_activation

WARP = 32
FULL_MASK = "T.uint32(4294967295)"


def guard(cond: str | None) -> str | None:
    return f"if {cond}:" if cond else None


def epilogue(src: Src, value: str, bias_index: str | None, activation: str) -> str:
    """Bind ``value (+ bias[bias_index])`` and return the activated expression."""
    y = src.var("y")
    src.let(y, value + (f" + bias[{bias_index}]" if bias_index is not None else ""))
    return emit_activation(src, y, activation)
