"""CPU schedule rules (dlight protocol) and the Relax rewrites that feed them.

``default_rules(target)`` is the ordered rule list for ``s_tir.dlight.ApplyDefaultSchedule``:
first match wins, :class:`Fallback` last. Each rule's ``apply(func, target, tunable)`` returns a
``Schedule`` or ``None`` (not applicable). Functions marked ``"tirx.is_scheduled"`` are skipped
by ``ApplyDefaultSchedule`` itself.

The kernels that need a specific data layout (packed dense weights, NCHWc convolutions) are
introduced at the Relax level by the ``relax_*`` passes and recognised by the rules through block
annotations (:mod:`._contract`).
"""

from __future__ import annotations

from .. import _tvm
from ..cpu_target import CompileTarget
from ._contract import is_hand_scheduled
from .conv2d import Conv2dNCHWc
from .dense import Dense
from .depthwise import DepthwiseNCHWc
from .fallback import Fallback
from .injective import Injective
from .reduction import RowReduction
from .winograd import WinogradInput, WinogradOutput

__all__ = [
    "Conv2dNCHWc",
    "Dense",
    "DepthwiseNCHWc",
    "Fallback",
    "Injective",
    "RowReduction",
    "WinogradInput",
    "WinogradOutput",
    "default_rules",
    "explain",
]


def default_rules(target: CompileTarget) -> list:
    """Ordered schedule rules for ``target`` (a :class:`~sparseforge.codegen.cpu_target.CompileTarget`)."""
    lanes = target.vector_lanes
    return [
        Dense(),
        Conv2dNCHWc(),
        DepthwiseNCHWc(),
        WinogradInput(),
        WinogradOutput(),
        RowReduction(lanes),
        Injective(lanes),
        Fallback(lanes),
    ]


def explain(mod, target: CompileTarget) -> dict[str, str]:
    """For each not-yet-scheduled PrimFunc of ``mod``: the name of the first rule that accepts it.

    ``""`` means no rule did (the function would be compiled unscheduled). Use it on the module
    before ``ApplyDefaultSchedule`` (``pipeline.optimize(..., schedule=False)``).
    """
    tvm_target = target.tvm_target()
    rules = default_rules(target)
    picked = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, _tvm.tirx.PrimFunc) or is_hand_scheduled(func):
            continue
        picked[gv.name_hint] = next(
            (type(r).__name__ for r in rules if r.apply(func, tvm_target, False) is not None), ""
        )
    return picked
